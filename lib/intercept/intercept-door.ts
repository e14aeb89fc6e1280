/**
 * The intercept door: listeners (fixed, tproxy, redirect, proxy: the transparent engineer's listener modes) hand
 * accepted connections to relay sessions. Counts sessions in total and per client address; over a limit the
 * client gets 421 and the connection is closed. `update(deps)` swaps the policy for sessions started later.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Door, DoorDeps } from '../daemon/door.js';
import type { Endpoint } from '../core/stage.js';
import { formatReply } from '../core/smtp-reply.js';
import type { BareLineEndingPolicy } from '../smtp/data-framer.js';
import { DEFAULT_HEADER_CAP } from '../smtp/header-collector.js';
import { createInterceptListener, type AcceptedConnection, type InterceptListener, type ListenerOptions, type RefusedConnection } from './listener.js';
import { connectUpstream } from './upstream-connect.js';
import { RelaySession, newSessionId, type StarttlsPolicy } from './relay-session.js';
import { DEFAULT_SCAN_READ_AHEAD, DEFAULT_SCAN_READ_AHEAD_TOTAL, ReadAheadBudget } from './read-ahead.js';
import { WorkerPool } from './worker-pool.js';

export interface InterceptDoorOptions {
  readonly name?: string;
  readonly listeners: readonly ListenerOptions[];
  /** STARTTLS from the client: relay it (the session becomes an opaque byte relay) or forbid it (default relay). */
  readonly starttls?: StarttlsPolicy;
  /** Bare CR/LF inside DATA: reject the message (default) or normalise to CRLF. */
  readonly bareLf?: BareLineEndingPolicy;
  /** Most header bytes held for header/eoh rules (default 256 KiB). */
  readonly holdMaxSize?: number;
  /** Hold the upstream greeting this many ms so early talkers show themselves to the `earlytalker` rule (default 0). */
  readonly greetDelay?: number;
  /**
   * Hold mode: messages up to this many bytes are kept until the eom verdict and sent with every header mutation
   * applied (verdict headers, header edits, quarantine); larger ones fall back to streaming. 0 (default): stream.
   */
  readonly holdMessagesUpTo?: number;
  /** Held bytes kept in memory per message before spilling to a private file (default 64 KiB). */
  readonly holdMemory?: number;
  /** Parent directory of the private (0700) hold spool directory (default the OS temp dir). */
  readonly holdDir?: string;
  /**
   * While scanners run, how far a session may read the client ahead of a slower upstream (bytes waiting for the
   * upstream), so the scanners get the message at the client's pace: per session and for all sessions of the door
   * together. Default 16 MiB and 64 MiB; 0 turns read-ahead off.
   */
  readonly scanReadAhead?: number;
  readonly scanReadAheadTotal?: number;
  /**
   * Run sessions in `count` worker processes (more than 1): this door accepts, applies the session limits and
   * hands each connection to a worker started as `entry args...` (lib/daemon/intercept-worker.ts).
   */
  readonly workers?: { readonly count: number; readonly entry: string; readonly args: readonly string[] };
  /** For tests: a different upstream connector (fault injection). */
  readonly connect?: (dest: Endpoint, opts: { transparentSource?: Endpoint; timeoutMs: number }) => Promise<Socket>;
}

export function createInterceptDoor(options: InterceptDoorOptions, deps: DoorDeps): Door {
  return new InterceptDoor(options, deps);
}

/** Runs sessions for connections another process accepted (an intercept worker); it never listens itself. */
export interface InterceptSessionHost {
  /** Runs one session (attach an 'error' handler to the socket first); resolves when it has closed. `sessions`: the accepting daemon's counts, this one included. */
  adopt(c: AcceptedConnection, sessions: { client: number; total: number }): Promise<void>;
  update(deps: DoorDeps): void;
  stop(drainMs: number): Promise<void>;
  readonly activeSessions: number;
}

export function createInterceptSessionHost(options: InterceptDoorOptions, deps: DoorDeps): InterceptSessionHost {
  return new InterceptDoor({ ...options, listeners: [] }, deps);
}

class InterceptDoor implements Door, InterceptSessionHost {
  readonly name: string;
  private deps: DoorDeps;
  private listeners: InterceptListener[] = [];
  private readonly sessions = new Set<RelaySession>();
  private readonly perClient = new Map<string, number>();
  private pool: WorkerPool | undefined;
  private stopping = false;
  /** The private hold spool directory, created at the first spill, removed at stop. */
  private spoolDir: string | undefined;
  private readonly readAhead: ReadAheadBudget | undefined;
  private readonly holdDir = (): string => (this.spoolDir ??= mkdtempSync(join(this.options.holdDir ?? tmpdir(), 'sluice-hold-')));

  constructor(
    private readonly options: InterceptDoorOptions,
    deps: DoorDeps,
  ) {
    this.name = options.name ?? 'intercept';
    this.deps = deps;
    const perSession = options.scanReadAhead ?? DEFAULT_SCAN_READ_AHEAD;
    const total = options.scanReadAheadTotal ?? DEFAULT_SCAN_READ_AHEAD_TOTAL;
    if (perSession > 0 && total > 0) this.readAhead = new ReadAheadBudget(Math.min(perSession, total), total);
  }

  get addresses(): readonly string[] {
    return this.listeners.map((l) => l.address);
  }

  get activeSessions(): number {
    // Sessions handed to worker processes count until their worker reports them closed.
    return this.sessions.size + (this.pool?.activeSessions ?? 0);
  }

  update(deps: DoorDeps): void {
    this.deps = deps;
    this.pool?.reload();
  }

  async start(): Promise<void> {
    const log = this.deps.logger.child({ door: this.name });
    const w = this.options.workers;
    if (w && w.count > 1) {
      this.pool = new WorkerPool({ workers: w.count, entry: w.entry, args: w.args, logger: log });
      await this.pool.start();
      log.info({ workers: this.pool.pids }, 'intercept workers ready');
    }
    for (const opts of this.options.listeners) {
      const l = createInterceptListener(opts, log);
      l.on('connection', (c) => this.onConnection(c));
      l.on('refused', (r) => this.onRefused(r));
      l.on('error', (err) => log.error({ error: err.message }, 'listener error'));
      try {
        await l.listen();
      } catch (err) {
        await Promise.all(this.listeners.map((x) => x.close()));
        this.listeners = [];
        await this.pool?.stop(0);
        this.pool = undefined;
        throw err;
      }
      this.listeners.push(l);
      log.info({ listen: l.address, mode: opts.mode }, 'intercept listener started');
    }
  }

  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    // net.Server.close() calls back only once every accepted socket is closed: start it, drain, then await it.
    const closing = Promise.all(this.listeners.map((l) => l.close()));
    const pooled = this.pool?.stop(drainMs);
    const all = Promise.all([...this.sessions].map((s) => s.closed));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]);
    if (timer) clearTimeout(timer);
    for (const s of this.sessions) s.abort('shutdown');
    await all;
    await pooled;
    this.pool = undefined;
    await closing;
    this.listeners = [];
    if (this.spoolDir) rmSync(this.spoolDir, { recursive: true, force: true });
    this.spoolDir = undefined;
  }

  private onRefused(r: RefusedConnection): void {
    const { deps } = this;
    deps.logger.info({ door: this.name, event: 'REFUSED', client: r.client.ip, reason: r.reason, detail: r.detail }, 'connection refused by the listener');
    r.end?.(formatReply({ code: 554, enhanced: '5.4.6', lines: [`${deps.hostname} Routing loop detected`] }, false));
  }

  private onConnection(c: AcceptedConnection): void {
    const { deps } = this;
    const socket = c.socket;
    socket.on('error', () => undefined);
    const ip = c.client.ip;
    const count = this.perClient.get(ip) ?? 0;
    const { limits } = deps;
    const total = this.activeSessions;
    if (this.stopping || total >= limits.sessions || count >= limits.sessionsPerClient) {
      const why = this.stopping ? 'shutting down' : total >= limits.sessions ? 'sessions' : 'sessionsPerClient';
      deps.logger.warn({ door: this.name, event: 'LIMIT', client: ip, limit: why, sessions: total, perClient: count }, 'session limit reached: 421');
      this.tooMany(socket);
      return;
    }
    this.perClient.set(ip, count + 1);
    const closed = (): void => {
      const n = (this.perClient.get(ip) ?? 1) - 1;
      if (n <= 0) this.perClient.delete(ip);
      else this.perClient.set(ip, n);
    };
    const sessions = { client: count + 1, total: total + 1 };
    if (this.pool) {
      if (!this.pool.dispatch(c, sessions, closed)) {
        closed();
        deps.logger.warn({ door: this.name, event: 'LIMIT', client: ip, limit: 'workers' }, 'no intercept worker available: 421');
        this.tooMany(socket);
      }
      return;
    }
    void this.adopt(c, sessions).then(closed);
  }

  private tooMany(socket: Socket): void {
    socket.end(`421 4.7.0 ${this.deps.hostname} Too many connections, try again later\r\n`);
    setTimeout(() => socket.destroy(), 2000).unref();
  }

  /** The caller has attached an 'error' handler to `c.socket` (as onConnection does). */
  adopt(c: AcceptedConnection, sessions: { client: number; total: number }): Promise<void> {
    const { deps } = this;
    const session = new RelaySession(
      c.socket,
      {
        id: newSessionId(),
        client: c.client,
        destination: c.destination,
        source: c.source,
        head: c.head,
        starttls: this.options.starttls ?? 'relay',
        bareLineEndings: this.options.bareLf ?? 'reject',
        headerCap: this.options.holdMaxSize ?? DEFAULT_HEADER_CAP,
        connect: this.options.connect ?? connectUpstream,
        ...(this.options.greetDelay ? { greetDelay: this.options.greetDelay } : {}),
        sessions,
        ...(this.options.holdMessagesUpTo ? { holdMessagesUpTo: this.options.holdMessagesUpTo, holdDir: this.holdDir } : {}),
        ...(this.options.holdMemory ? { holdMemory: this.options.holdMemory } : {}),
        ...(this.readAhead ? { readAhead: this.readAhead } : {}),
        ...(c.transparentSource ? { transparentSource: c.transparentSource } : {}),
      },
      deps,
    );
    this.sessions.add(session);
    const done = session.closed.then(() => {
      this.sessions.delete(session);
    });
    session.start();
    return done;
  }
}
