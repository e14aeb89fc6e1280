/**
 * After an upstream's 220 to STARTTLS the session becomes an opaque byte relay (smtp-gated's "direct proxy"):
 * both directions are piped with backpressure; nothing is parsed any more.
 */
import type { Socket } from 'node:net';

export interface OpaqueRelayHooks {
  /** Bytes moved in either direction (for the idle timer). */
  activity(): void;
  fromClient(bytes: number): void;
  fromUpstream(bytes: number): void;
}

/** Replaces the sockets' 'data' listeners with a two-way pipe. Bytes already read must be written by the caller first. */
export function relayOpaque(client: Socket, upstream: Socket, hooks: OpaqueRelayHooks): void {
  client.removeAllListeners('data');
  upstream.removeAllListeners('data');
  client.on('data', (c: Buffer) => {
    hooks.fromClient(c.length);
    hooks.activity();
    if (!upstream.write(c)) {
      client.pause();
      upstream.once('drain', () => client.resume());
    }
  });
  upstream.on('data', (c: Buffer) => {
    hooks.fromUpstream(c.length);
    hooks.activity();
    if (!client.write(c)) {
      upstream.pause();
      client.once('drain', () => upstream.resume());
    }
  });
  client.resume();
  upstream.resume();
}
