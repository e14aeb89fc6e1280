/** Peers started inside namespaces for e2e tests: smtp-sink, the intercept byte relay, swaks. */
import { chownSync, chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Context } from 'mocha';
import { loadNative } from '../../lib/intercept/native-sockopt.js';
import type { ListenerOptions } from '../../lib/intercept/listener.js';
import { requirePeer } from './ci-guard.js';
import type { RelayEvent } from './intercept-relay.js';
import { commandAvailable, netnsAvailable, type Netns } from './netns.js';
import { buildRoot } from './paths.js';
import { makeTempDir } from './temp-dir.js';

export const SMTP_SINK = '/usr/sbin/smtp-sink';

/** From a before() hook of an interception e2e suite: root with ip netns, nft, swaks, smtp-sink, the native helper. */
export function requireInterceptionPeers(ctx: Context): void {
  requirePeer(ctx, netnsAvailable(), 'root with ip netns');
  requirePeer(ctx, commandAvailable('nft') && commandAvailable('swaks') && commandAvailable(SMTP_SINK), 'nft, swaks, smtp-sink');
  requirePeer(ctx, loadNative() !== undefined, 'native helper (npx node-gyp rebuild -C native)');
}

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until something listens on TCP `port` inside `ns`. */
export async function waitListening(ns: Netns, port: number): Promise<void> {
  await waitFor(`a listener on port ${port} in ${ns.name}`, () => {
    const r = ns.run(['ss', '-Hltn', `sport = :${port}`]);
    return r.stdout.trim() !== '' ? true : undefined;
  });
}

export interface SinkHandle {
  /** The dumped messages (smtp-sink prepends X-Client-Addr etc.). */
  messages(): string[];
  waitForMessages(n: number): Promise<string[]>;
  remove(): void;
}

/** smtp-sink on ip:port inside `ns`, dumping every transaction into a private temp dir. */
export async function startSmtpSink(ns: Netns, ip: string, port: number): Promise<SinkHandle> {
  const tmp = makeTempDir('sluice-sink-');
  const pw = ns.run(['id', '-u', 'postfix']);
  const uid = Number(pw.stdout.trim());
  chmodSync(tmp.path, 0o700);
  if (Number.isInteger(uid) && uid > 0) chownSync(tmp.path, uid, -1);
  ns.spawn([SMTP_SINK, '-u', 'postfix', '-h', 'sink.test', '-d', join(tmp.path, 'm.'), `${ip}:${port}`, '50']);
  await waitListening(ns, port);
  const messages = (): string[] =>
    readdirSync(tmp.path)
      .sort()
      .map((f) => readFileSync(join(tmp.path, f), 'latin1'));
  return {
    messages,
    waitForMessages: (n) => waitFor(`${n} message(s) in smtp-sink`, () => (messages().length >= n ? messages() : undefined)),
    remove: () => tmp.remove(),
  };
}

export interface RelayHandle {
  readonly address: string;
  readonly events: RelayEvent[];
  waitForEvent(pred: (e: RelayEvent) => boolean, what?: string): Promise<RelayEvent>;
  readonly output: () => string;
}

export type RelayedEvent = Extract<RelayEvent, { kind: 'relayed' }>;

/** The relay's first 'relayed' event (a session that reached its upstream). */
export async function waitRelayed(relay: RelayHandle): Promise<RelayedEvent> {
  return (await relay.waitForEvent((x) => x.kind === 'relayed', 'relayed')) as RelayedEvent;
}

/** The intercept byte relay (spec/helpers/intercept-relay-main.js of this build) running inside `ns`. */
export async function startRelayIn(ns: Netns, opts: ListenerOptions, connectTimeoutMs = 3000): Promise<RelayHandle> {
  const script = join(buildRoot, 'spec', 'helpers', 'intercept-relay-main.js');
  const child = ns.spawn([process.execPath, script, JSON.stringify(opts), String(connectTimeoutMs)]);
  const events: RelayEvent[] = [];
  let out = '';
  let pending = '';
  let address: string | undefined;
  let failed: string | undefined;
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    pending += d.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.startsWith('READY ')) address = line.slice(6);
      else if (line.startsWith('FAILED ')) failed = line.slice(7);
      else if (line.startsWith('{')) events.push(JSON.parse(line) as RelayEvent);
    }
  });
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor('the relay to start', () => {
    if (failed !== undefined) throw new Error(`relay failed to start: ${failed}`);
    if (child.exitCode !== null) throw new Error(`relay exited: ${out}`);
    return address;
  });
  return {
    address: address ?? '',
    events,
    output: () => out,
    waitForEvent: (pred, what = 'a relay event') =>
      waitFor(`${what} (have ${JSON.stringify(events)}; output ${out})`, () => events.find(pred)),
  };
}

export interface SwaksResult {
  readonly status: number | null;
  readonly transcript: string;
}

/** swaks inside `ns` against server:port; returns its transcript (stdout + stderr). */
export async function swaks(ns: Netns, server: string, port: number, extra: string[] = []): Promise<SwaksResult> {
  const r = await ns.runAsync(
    ['swaks', '--server', server, '--port', String(port), '--from', 'alice@client.test', '--to', 'bob@server.test', '--helo', 'client.test', '--timeout', '8', ...extra],
    20000,
  );
  return { status: r.status, transcript: r.stdout + r.stderr };
}

/** Connects from inside `ns` with Node (works where swaks lacks IPv6), returns what the server sent until close. */
export async function tcpProbe(ns: Netns, host: string, port: number, timeoutMs = 5000): Promise<string> {
  const script = `const s=require('net').connect({host:process.argv[1],port:+process.argv[2]});let o='';
s.on('data',d=>o+=d.toString('latin1'));s.on('error',e=>{o+='ERROR '+e.code;});
s.on('close',()=>{process.stdout.write(o);process.exit(0)});setTimeout(()=>{process.stdout.write(o+'TIMEOUT');process.exit(0)},${timeoutMs});`;
  const r = await ns.runAsync([process.execPath, '-e', script, host, String(port)], timeoutMs + 5000);
  return r.stdout;
}
