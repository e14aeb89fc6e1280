/**
 * A minimal byte relay on top of the intercept listener (test helper, and the program the e2e gateway runs until
 * the intercept door is used there): for every accepted connection it connects upstream (optionally with full
 * transparency), writes `head`, then pipes both ways. Every connection is reported through `onEvent`.
 */
import type * as net from 'node:net';
import type { Logger } from '../../lib/core/logger.js';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import type { Endpoint } from '../../lib/core/stage.js';
import {
  createInterceptListener,
  type AcceptedConnection,
  type InterceptListener,
  type ListenerOptions,
} from '../../lib/intercept/listener.js';
import { connectUpstream } from '../../lib/intercept/upstream-connect.js';

export type RelayEvent =
  | { kind: 'relayed'; client: Endpoint; destination: Endpoint; source: string; upstreamLocal: Endpoint; proxyVersion?: number; tlvTypes?: number[] }
  | { kind: 'refused'; client: Endpoint; reason: string; detail: string; destination?: Endpoint }
  | { kind: 'upstream-failed'; client: Endpoint; destination: Endpoint; code: string };

export interface ByteRelay {
  readonly listener: InterceptListener;
  close(): Promise<void>;
}

export async function startByteRelay(
  opts: ListenerOptions,
  onEvent: (e: RelayEvent) => void,
  logger: Logger = NULL_LOGGER,
  connectTimeoutMs = 5000,
): Promise<ByteRelay> {
  const listener = createInterceptListener(opts, logger);
  const live = new Set<net.Socket>();
  listener.on('refused', (r) => {
    if (r.reason === 'loop') r.end?.('554 5.4.6 loop detected\r\n');
    onEvent({ kind: 'refused', client: r.client, reason: r.reason, detail: r.detail, ...(r.destination ? { destination: r.destination } : {}) });
  });
  listener.on('connection', (c: AcceptedConnection) => {
    const client = c.socket;
    live.add(client);
    client.on('error', () => client.destroy());
    client.on('close', () => live.delete(client));
    connectUpstream(c.destination, { timeoutMs: connectTimeoutMs, ...(c.transparentSource ? { transparentSource: c.transparentSource } : {}) }).then(
      (up) => {
        live.add(up);
        up.on('close', () => live.delete(up));
        up.on('error', () => up.destroy());
        onEvent({
          kind: 'relayed',
          client: c.client,
          destination: c.destination,
          source: c.source,
          upstreamLocal: { ip: up.localAddress ?? '', port: up.localPort ?? 0 },
          ...(c.proxy ? { proxyVersion: c.proxy.version, tlvTypes: c.proxy.tlvs.map((t) => t.type) } : {}),
        });
        if (c.head.length > 0) up.write(c.head);
        client.pipe(up);
        up.pipe(client);
        client.on('close', () => up.destroy());
        up.on('close', () => client.destroy());
        if (client.destroyed) up.destroy();
      },
      (err: NodeJS.ErrnoException) => {
        onEvent({ kind: 'upstream-failed', client: c.client, destination: c.destination, code: err.code ?? String(err) });
        client.destroy();
      },
    );
  });
  await listener.listen();
  return {
    listener,
    async close() {
      await listener.close();
      for (const s of live) s.destroy();
    },
  };
}
