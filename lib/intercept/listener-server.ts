import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Logger } from '../core/logger.js';
import type { Endpoint } from '../core/stage.js';
import type { AcceptedConnection, InterceptListener, ListenerOptions, RefusedConnection } from './listener.js';
import type { ListenerMode, ModeResult } from './listener-mode.js';
import { endpointEquals, formatEndpoint, normalizeIp } from './address-util.js';
import { fixedMode } from './listener-fixed.js';
import { proxyMode } from './listener-proxy.js';
import { redirectMode } from './listener-redirect.js';
import { isOwnAddress, registerOwnAddress } from './listener-registry.js';
import { tproxyMode } from './listener-tproxy.js';

function modeFor(opts: ListenerOptions): ListenerMode {
  switch (opts.mode) {
    case 'fixed':
      return fixedMode(opts.upstream);
    case 'tproxy':
      return tproxyMode();
    case 'redirect':
      return redirectMode();
    case 'proxy':
      return proxyMode(opts);
    default:
      throw new Error(`unknown listener mode ${JSON.stringify(opts.mode as string)}`);
  }
}

const swallow = (): void => undefined;
const DEFAULT_MAX_PENDING = 1000;

/** The listener shared by all modes: accepts, asks the mode for client and destination, refuses loops. */
class ListenerServer extends EventEmitter implements InterceptListener {
  private readonly server = net.createServer({ pauseOnConnect: false, noDelay: true });
  private readonly mode: ListenerMode;
  private bound: Endpoint | undefined;
  private unregister: (() => void) | undefined;
  private readonly pending = new Set<net.Socket>();

  constructor(
    private readonly opts: ListenerOptions,
    private readonly logger: Logger,
  ) {
    super();
    this.mode = modeFor(opts);
    this.server.on('connection', (s) => this.accept(s));
    this.server.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else this.logger.error({ err, listen: formatEndpoint(opts.listen) }, 'intercept listener error');
    });
  }

  get endpoint(): Endpoint | undefined {
    return this.bound;
  }

  get address(): string {
    return this.bound ? formatEndpoint(this.bound) : '';
  }

  async listen(): Promise<void> {
    this.mode.check(this.opts);
    const { listen, upstream, mode } = this.opts;
    if (mode === 'fixed' && upstream && endpointEquals(listen, upstream)) {
      throw new Error(`listener ${formatEndpoint(listen)}: upstream is the listener itself (loop)`);
    }
    if (this.mode.bind) await this.mode.bind(this.server, this.opts);
    else {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        this.server.once('error', onError);
        this.server.listen({ host: listen.ip, port: listen.port, backlog: this.opts.backlog ?? 511 }, () => {
          this.server.off('error', onError);
          resolve();
        });
      });
    }
    const a = this.server.address();
    if (a && typeof a === 'object') this.bound = { ip: normalizeIp(a.address), port: a.port };
    else this.bound = { ip: normalizeIp(listen.ip), port: listen.port };
    // Register the address as bound (':: ' stays wildcard; a mapped wildcard is still wildcard).
    this.unregister = registerOwnAddress({ ip: a && typeof a === 'object' ? a.address : listen.ip, port: this.bound.port });
  }

  async close(): Promise<void> {
    this.unregister?.();
    this.unregister = undefined;
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    if (!socket.remoteAddress || socket.remotePort === undefined) {
      socket.destroy();
      return;
    }
    socket.on('error', swallow);
    const peer: Endpoint = { ip: normalizeIp(socket.remoteAddress), port: socket.remotePort };
    const local: Endpoint = { ip: normalizeIp(socket.localAddress ?? ''), port: socket.localPort ?? 0 };
    if (this.pending.size >= (this.opts.maxPending ?? DEFAULT_MAX_PENDING)) {
      this.refuse(socket, peer, { ok: false, reason: 'busy', detail: 'too many connections waiting for their destination' });
      return;
    }
    this.pending.add(socket);
    this.mode
      .resolve(socket, { peer, local })
      .then(
        (r) => this.settle(socket, peer, local, r),
        (err: unknown) => this.settle(socket, peer, local, { ok: false, reason: 'no-destination', detail: (err as Error).message }),
      )
      .catch((err: unknown) => {
        // A throwing 'connection' handler must not leave the socket open.
        this.logger.error({ err, client: formatEndpoint(peer) }, 'intercept connection handler failed');
        socket.destroy();
      });
  }

  private settle(socket: net.Socket, peer: Endpoint, local: Endpoint, r: ModeResult): void {
    this.pending.delete(socket);
    if (r.ok && (socket.destroyed || !socket.readable)) {
      r = { ok: false, reason: 'closed', detail: 'client closed before hand-off', client: r.client, destination: r.destination };
    }
    if (r.ok) {
      const loop = this.loopReason(r.client, r.destination, local);
      if (loop) r = { ok: false, reason: 'loop', detail: loop, client: r.client, destination: r.destination };
    }
    if (!r.ok) {
      this.refuse(socket, r.client ?? peer, r);
      return;
    }
    const transparentSource =
      this.opts.transparent === true ? { ip: r.client.ip, port: this.opts.bindClientPort === true ? r.client.port : 0 } : undefined;
    const conn: AcceptedConnection = {
      socket,
      client: r.client,
      destination: r.destination,
      source: this.mode.source,
      head: r.head,
      local,
      peer,
      ...(r.proxy ? { proxy: r.proxy } : {}),
      ...(transparentSource ? { transparentSource } : {}),
    };
    socket.off('error', swallow);
    this.logger.debug(
      { client: formatEndpoint(conn.client), destination: formatEndpoint(conn.destination), source: conn.source },
      'intercepted connection',
    );
    if (this.listenerCount('connection') === 0) {
      socket.destroy();
      return;
    }
    this.emit('connection', conn);
  }

  /** Why this destination is a loop, or undefined. */
  private loopReason(client: Endpoint, destination: Endpoint, local: Endpoint): string | undefined {
    if (isOwnAddress(destination, this.bound ? [this.bound] : [])) return 'destination is one of our own listeners';
    const mode = this.opts.mode;
    if (mode === 'tproxy' || mode === 'redirect') {
      if (endpointEquals(destination, local) && this.bound && local.port === this.bound.port) {
        return 'destination is the listener itself (connection was not intercepted)';
      }
      // smtp-gated/proxsmtp rule: an intercepted client talking to its own address would loop back to it.
      if (normalizeIp(client.ip) === normalizeIp(destination.ip)) return 'destination is the client itself';
    }
    return undefined;
  }

  private refuse(socket: net.Socket, client: Endpoint, r: Extract<ModeResult, { ok: false }>): void {
    const fields = {
      client: formatEndpoint(client),
      reason: r.reason,
      detail: r.detail,
      ...(r.destination ? { destination: formatEndpoint(r.destination) } : {}),
      listen: this.address,
    };
    if (r.reason === 'closed') this.logger.debug(fields, 'intercept connection closed early');
    else this.logger.warn(fields, 'intercept connection refused');
    let ended = false;
    const ev: RefusedConnection = {
      client,
      reason: r.reason,
      detail: r.detail,
      ...(r.destination ? { destination: r.destination } : {}),
      ...(r.reason === 'loop'
        ? {
            end: (bytes: string | Buffer) => {
              if (ended || socket.destroyed) return;
              ended = true;
              socket.end(bytes);
              setTimeout(() => socket.destroy(), 2000).unref();
            },
          }
        : {}),
    };
    try {
      this.emit('refused', ev);
    } finally {
      if (!ended) socket.destroy();
    }
  }
}

export function createListenerServer(opts: ListenerOptions, logger: Logger): InterceptListener {
  return new ListenerServer(opts, logger);
}
