/**
 * The milter listener: accepts MTA connections on `inet:host:port` (also libmilter's `inet:port@host`,
 * `inet6:port@host`) or `unix:/path` / `local:/path` (mode 0660, a stale socket file removed safely) and runs one
 * MilterSession per connection. Sessions are independent: one failing never touches another.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { DEFER_ACCEPT_SECONDS, deferAccept } from '../core/defer-accept.js';
import type { DoorDeps } from '../daemon/door.js';
import { listenOn } from './door-listener.js';
import { MilterSession } from './milter-session.js';
import { promptAcker } from './prompt-ack.js';

export type MilterListenAddress = { readonly kind: 'inet'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

/** Parses a Postfix- or libmilter-style milter endpoint. Returns an error text for anything else. */
export function parseListenAddress(spec: string): MilterListenAddress | string {
  const m = /^(inet6?|unix|local):(.+)$/.exec(spec.trim());
  if (!m) return `milter listen address "${spec}" must look like inet:127.0.0.1:8890, inet:8890@127.0.0.1 or unix:/path`;
  const [, scheme, rest] = m as unknown as [string, string, string];
  if (scheme === 'unix' || scheme === 'local') {
    if (!rest.startsWith('/')) return `unix socket path "${rest}" must be absolute`;
    return { kind: 'unix', path: rest };
  }
  let host: string;
  let portText: string;
  const at = /^(\d+)@(.+)$/.exec(rest);
  if (at) {
    portText = at[1] as string;
    host = at[2] as string;
  } else {
    const i = rest.lastIndexOf(':');
    if (i < 0) return `milter listen address "${spec}" has no port`;
    host = rest.slice(0, i);
    portText = rest.slice(i + 1);
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port > 65535) return `milter listen port "${portText}" is not a port number`;
  if (host === '') return `milter listen address "${spec}" has no host`;
  return { kind: 'inet', host, port };
}

export interface MilterServerOptions {
  readonly address: MilterListenAddress;
  readonly maxPacket: number;
  readonly readTimeoutMs: number;
  readonly progressIntervalMs: number;
  /** Unix socket permissions (default 0o660). */
  readonly socketMode?: number;
  /** Also negotiate SMFIP_NR_* for CONNECT/HELO/MAIL/RCPT without rules (default false). */
  readonly noReply?: boolean;
  /** Answer CONNECT/HELO/MAIL verdicts at the first RCPT (default false). */
  readonly delayReject?: boolean;
}

let counter = 0;
function sessionId(): string {
  counter = (counter + 1) % 0x7fffffff;
  return `m${Date.now().toString(36)}${counter.toString(36)}`;
}

export class MilterServer {
  private server: Server | undefined;
  private readonly sessions = new Set<MilterSession>();
  private bound: string[] = [];

  constructor(
    private readonly options: MilterServerOptions,
    private deps: DoorDeps,
  ) {}

  get addresses(): readonly string[] {
    return this.bound;
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  /** New connections use these deps; sessions already running keep theirs. */
  update(deps: DoorDeps): void {
    this.deps = deps;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const addr = this.options.address;
    if (addr.kind === 'unix') await removeStaleSocket(addr.path);
    const server = createServer({ pauseOnConnect: false }, (socket) => this.accept(socket));
    server.on('error', (err) => this.deps.logger.error({ err: err.message }, 'milter listener error'));
    await listenOn(server, addr);
    if (addr.kind === 'unix') {
      chmodSync(addr.path, this.options.socketMode ?? 0o660);
      this.bound = [`unix:${addr.path}`];
    } else {
      const a = server.address();
      const port = typeof a === 'object' && a ? a.port : addr.port;
      this.bound = [`inet:${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`];
      const notDeferred = deferAccept(server, DEFER_ACCEPT_SECONDS);
      if (notDeferred !== undefined) this.deps.logger.debug({ reason: notDeferred }, 'milter listener without TCP_DEFER_ACCEPT');
    }
    this.server = server;
    this.deps.logger.debug({ addresses: this.bound }, 'milter door listening');
  }

  private accept(socket: Socket): void {
    const deps = this.deps;
    if (this.sessions.size >= deps.limits.sessions) {
      deps.logger.warn({ limit: deps.limits.sessions }, 'milter connection refused: session limit reached');
      socket.destroy();
      return;
    }
    const ackNow = this.options.address.kind === 'unix' ? undefined : promptAcker(socket);
    const session = new MilterSession(socket, {
      id: sessionId(),
      deps,
      maxPacket: this.options.maxPacket,
      readTimeoutMs: this.options.readTimeoutMs,
      progressIntervalMs: this.options.progressIntervalMs,
      ...(this.options.noReply ? { noReply: true } : {}),
      ...(this.options.delayReject ? { delayReject: true } : {}),
      ...(this.options.address.kind === 'unix' || ackNow !== undefined ? { promptAcks: true } : {}),
      ...(ackNow !== undefined ? { ackNow } : {}),
    });
    this.sessions.add(session);
    void session.closed.then(() => this.sessions.delete(session));
  }

  async stop(drainMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.sessions.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const all = Promise.all([...this.sessions].map((s) => s.closed));
      await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, drainMs))))]);
      if (timer) clearTimeout(timer);
      for (const s of this.sessions) s.destroy();
      await Promise.all([...this.sessions].map((s) => s.closed));
    }
    await closed;
    const addr = this.options.address;
    if (addr.kind === 'unix') {
      try {
        unlinkSync(addr.path);
      } catch {
        /* already gone */
      }
    }
    this.bound = [];
  }
}

/**
 * Removes a socket file left by a previous run: only if it is a socket and nobody answers on it.
 * A live socket (another instance) or a non-socket file is an error, never deleted.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`milter socket path ${path} exists and is not a socket; refusing to remove it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    const t = setTimeout(() => {
      s.destroy();
      resolve(true);
    }, 1000);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
  if (live) throw new Error(`milter socket ${path} is in use by another process`);
  unlinkSync(path);
}
