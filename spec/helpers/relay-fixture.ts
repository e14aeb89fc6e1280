/**
 * Set-up shared by the intercept relay specs (relay-session, relay-faults, hold-mode): a fault upstream, a door
 * in front of it and raw clients, all closed after each test (clients first, then the door, then the upstream);
 * and the opening dialog most tests need before the part they are about.
 */
import { startFaultUpstream, type FaultScript, type FaultUpstream } from './fault-upstream.js';
import { rawClient, type RawClient } from './smtp-raw-client.js';

export interface RelayFixture {
  /** Starts a fault upstream on loopback (127.0.0.1 or `host`, e.g. ::1), closed after the test. */
  upstream(script?: FaultScript, host?: string): Promise<FaultUpstream>;
  /** Registers a started door (anything with `stop()`), stopped after the test before the upstream closes. */
  door<D extends { stop(): Promise<void> }>(door: D): D;
  /** A raw client connected to `port`, closed after the test. */
  client(port: number): Promise<RawClient>;
  /** Registers a client connected elsewhere, closed after the test. */
  track(client: RawClient): RawClient;
}

/** Call inside `describe`: registers the afterEach that closes what the tests started. */
export function useRelayFixture(): RelayFixture {
  const upstreams: FaultUpstream[] = [];
  const doors: Array<{ stop(): Promise<void> }> = [];
  const clients: RawClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const d of doors.splice(0)) await d.stop();
    for (const u of upstreams.splice(0)) await u.close();
  });
  return {
    async upstream(script, host) {
      const up = await (host === undefined ? startFaultUpstream(script) : startFaultUpstream(script, host));
      upstreams.push(up);
      return up;
    },
    door(door) {
      doors.push(door);
      return door;
    },
    async client(port) {
      const c = await rawClient(port);
      clients.push(c);
      return c;
    },
    track(client) {
      clients.push(client);
      return client;
    },
  };
}

/** Reads the greeting and sends EHLO client.test; neither reply is checked (the test is about what follows). */
export async function greet(c: RawClient): Promise<void> {
  await c.reply();
  await c.cmd('EHLO client.test');
}

/**
 * greet(), then MAIL FROM:<a@b.example>, RCPT TO:<c@d.example> and DATA, replies not checked: the client is
 * ready to send message content.
 */
export async function openData(c: RawClient): Promise<void> {
  await greet(c);
  await c.cmd('MAIL FROM:<a@b.example>');
  await c.cmd('RCPT TO:<c@d.example>');
  await c.cmd('DATA');
}

/**
 * One message over a fresh raw client to 127.0.0.1:`port`: greeting, EHLO client.test, MAIL FROM:<a@example.org>,
 * RCPT TO:<`rcpt`>, DATA (which must answer 354), then `content` and the final dot; the reply to the dot.
 */
export async function sendOneMessage(port: number, rcpt: string, content: string, timeoutMs = 30_000): Promise<string> {
  const c = await rawClient(port);
  try {
    await greet(c);
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd(`RCPT TO:<${rcpt}>`);
    const data = await c.cmd('DATA');
    if (!/^354 /.test(data)) throw new Error(`DATA answered ${JSON.stringify(data)}, not 354`);
    return await c.cmd(`${content}\r\n.`, timeoutMs);
  } finally {
    c.close();
  }
}
