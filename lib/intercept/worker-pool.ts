/**
 * The daemon's side of an intercept listener with `workers: N`: forks N worker processes, hands each accepted
 * connection (its socket travels over the IPC channel) to the worker with the fewest sessions, hears back when a
 * session closes, replaces a worker that dies, and passes reload and stop on.
 *
 * The daemon keeps accepting and counting: the session limits (total, per client) stay exact across workers.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from '../core/logger.js';
import type { AcceptedConnection } from './listener.js';
import { isFromWorker, type ToWorker } from './worker-messages.js';

export interface WorkerPoolOptions {
  readonly workers: number;
  /** The worker's main module, started with `args`. */
  readonly entry: string;
  readonly args: readonly string[];
  readonly logger: Logger;
  /** How long a worker may take to report ready (default 30 s). */
  readonly readyTimeoutMs?: number;
}

interface Worker {
  readonly index: number;
  child: ChildProcess;
  ready: boolean;
  sessions: number;
  /** Exits in a row that came soon after the start (a worker that cannot start backs off). */
  readonly failures: number;
}

interface Outstanding {
  readonly worker: Worker;
  /** Still ours until child_process has sent it (a send queued behind another may never happen if the worker dies). */
  readonly socket: Socket;
  readonly closed: () => void;
}

/** Least time between two starts of one worker slot; doubled for each early exit in a row, up to RESPAWN_MAX_MS. */
const RESPAWN_MS = 1000;
const RESPAWN_MAX_MS = 60_000;
/** A worker that ran this long before it exited counts as a fresh failure, not one in a row. */
const EARLY_EXIT_MS = 10_000;

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly outstanding = new Map<number, Outstanding>();
  private nextToken = 1;
  private stopping = false;

  constructor(private readonly options: WorkerPoolOptions) {}

  /** Sessions handed out and not yet closed. */
  get activeSessions(): number {
    return this.outstanding.size;
  }

  /** Worker process ids (for logs and tests). */
  get pids(): number[] {
    return this.workers.map((w) => w.child.pid ?? 0);
  }

  /** Forks every worker and waits until each has loaded the configuration; rejects if one cannot. */
  async start(): Promise<void> {
    for (let i = 0; i < this.options.workers; i++) this.workers.push(this.spawn(i));
    try {
      await Promise.all(this.workers.map((w) => this.whenReady(w)));
    } catch (err) {
      await this.stop(0);
      throw err;
    }
  }

  /**
   * Hands a connection to the least busy worker. `closed` runs once the session is over (or its worker died).
   * False when no worker can take it (the caller answers the client).
   */
  dispatch(c: AcceptedConnection, sessions: { client: number; total: number }, closed: () => void): boolean {
    let best: Worker | undefined;
    for (const w of this.workers) if (w.ready && w.child.connected && (!best || w.sessions < best.sessions)) best = w;
    if (!best || this.stopping) return false;
    const socket = c.socket;
    // Whatever the socket has read is passed as `head`; stop reading first so no byte is read after that and lost.
    const head = [c.head, ...drain(socket)];
    const token = this.nextToken++;
    const msg: ToWorker = {
      t: 'session',
      token,
      client: c.client,
      destination: c.destination,
      source: c.source,
      head: Buffer.concat(head).toString('base64'),
      ...(c.transparentSource ? { transparentSource: c.transparentSource } : {}),
      sessions,
    };
    const w = best;
    w.sessions++;
    this.outstanding.set(token, { worker: w, socket, closed });
    w.child.send(msg, socket, { keepOpen: false }, (err) => {
      if (!err) return;
      this.options.logger.warn({ worker: w.index, err: err.message }, 'could not hand a session to its worker');
      socket.destroy();
      this.release(token);
    });
    return true;
  }

  /** Tells every worker to load the configuration again (after the daemon's own reload committed). */
  reload(): void {
    for (const w of this.workers) this.send(w, { t: 'reload' });
  }

  /** Stops the workers: their sessions get `drainMs` to finish. Resolves when every worker has exited. */
  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    const exits = this.workers.map((w) => exited(w.child));
    for (const w of this.workers) this.send(w, { t: 'stop', drainMs });
    const hard = setTimeout(() => {
      for (const w of this.workers) w.child.kill('SIGKILL');
    }, drainMs + 10_000);
    await Promise.all(exits);
    clearTimeout(hard);
    for (const token of [...this.outstanding.keys()]) this.release(token);
  }

  private send(w: Worker, msg: ToWorker): void {
    if (w.child.connected) w.child.send(msg, (err) => err && this.options.logger.warn({ worker: w.index, err: err.message }, 'worker message not delivered'));
  }

  private release(token: number): void {
    const o = this.outstanding.get(token);
    if (!o) return;
    this.outstanding.delete(token);
    o.worker.sessions--;
    o.closed();
  }

  private spawn(index: number, failures = 0): Worker {
    const child = fork(this.options.entry, [...this.options.args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    const w: Worker = { index, child, ready: false, sessions: 0, failures };
    const started = Date.now();
    child.on('message', (m: unknown) => {
      if (!isFromWorker(m)) return;
      if (m.t === 'ready') w.ready = true;
      else if (m.t === 'closed') this.release(m.token);
      else if (m.t === 'reloaded' && !m.ok) this.options.logger.error({ worker: index, pid: child.pid }, 'worker refused the new configuration; it keeps the old one');
      else if (m.t === 'failed') this.options.logger.error({ worker: index, pid: child.pid, error: m.error }, 'worker could not start');
    });
    child.on('error', (err) => this.options.logger.error({ worker: index, err: err.message }, 'worker process error'));
    child.on('exit', (code, signal) => {
      w.ready = false;
      for (const [token, o] of this.outstanding) {
        if (o.worker !== w) continue;
        // A socket child_process had not sent yet is still open here: close it (its client sees the close).
        o.socket.destroy();
        this.release(token);
      }
      if (this.stopping) return;
      const ran = Date.now() - started;
      const inARow = ran < EARLY_EXIT_MS ? w.failures + 1 : 1;
      const wait = Math.min(RESPAWN_MAX_MS, RESPAWN_MS * 2 ** (inARow - 1));
      this.options.logger.error({ worker: index, pid: child.pid, code, signal, restart_in_ms: wait }, 'worker exited; starting a new one');
      setTimeout(() => {
        if (!this.stopping) this.workers[index] = this.spawn(index, inARow);
      }, wait).unref();
    });
    this.options.logger.info({ worker: index, pid: child.pid }, 'worker started');
    return w;
  }

  private whenReady(w: Worker): Promise<void> {
    const timeoutMs = this.options.readyTimeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => done(new Error(`intercept worker ${w.index} did not start within ${timeoutMs} ms`)), timeoutMs);
      const onMessage = (m: unknown): void => {
        if (!isFromWorker(m)) return;
        if (m.t === 'ready') done();
        else if (m.t === 'failed') done(new Error(`intercept worker ${w.index} could not start: ${m.error}`));
      };
      const onExit = (code: number | null): void => done(new Error(`intercept worker ${w.index} exited (code ${code}) before it was ready`));
      const done = (err?: Error): void => {
        clearTimeout(t);
        w.child.off('message', onMessage);
        w.child.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      w.child.on('message', onMessage);
      w.child.once('exit', onExit);
    });
  }
}

/** Takes what a socket has buffered but not yet delivered, and stops its reads (until the handle changes hands). */
function drain(socket: Socket): Buffer[] {
  const out: Buffer[] = [];
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) out.push(chunk);
  // net.Socket keeps reading into its buffer while nobody listens (and read() just restarted it): stop the handle,
  // as child_process itself does when it sends a socket. Nothing is read in between: reads happen only in the
  // event loop's poll phase, and this runs synchronously up to child.send().
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (handle?.readStop) {
    handle.reading = false;
    handle.readStop();
  }
  return out;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}
