/**
 * A clamd client speaking zINSTREAM over a Unix or TCP socket, streaming the message as it arrives (no spool
 * file, so clamd never needs read access to our files: smtp-gated's "lstat() failed" cannot happen).
 *
 * Size limit: clamd drops the connection when a stream passes its StreamMaxLength. We never let that happen:
 * we send at most `maxBytes` (set it to clamd's StreamMaxLength or lower), then end the stream ourselves and
 * let clamd scan that prefix. A virus found in the prefix is still reported as a virus; a clean prefix of a
 * larger message is reported as `skipped` ("too large"), never as clean and never as an error.
 */
import { connect, type Socket } from 'node:net';
import { CLAMD_COMMANDS, CLAMD_MAX_REPLY, instreamChunkHeader, parseClamdScanReply, type ClamdVerdict } from './clamd-protocol.js';
import { connectOptions, parseScannerAddress, type ScannerAddress } from './scanner-address.js';
import { SCAN_BACKLOG_RESUME } from './scanner.js';

export interface ClamdClientOptions {
  /** "/run/clamav/clamd.ctl", "unix:/path" or "host:port". */
  readonly address: string | ScannerAddress;
  /** Most bytes streamed per message (≤ clamd's StreamMaxLength). */
  readonly maxBytes: number;
  /** Connect timeout, and the time clamd has to answer once the stream is complete. */
  readonly timeoutMs: number;
  /** Largest INSTREAM chunk (clamd accepts up to StreamMaxLength per chunk; 64 KiB keeps frames small). */
  readonly chunkSize?: number;
}

export type ClamdScanResult =
  | { readonly kind: 'clean'; readonly bytes: number }
  | { readonly kind: 'virus'; readonly name: string; readonly bytes: number }
  | { readonly kind: 'skipped'; readonly reason: string; readonly bytes: number }
  | { readonly kind: 'error'; readonly message: string };

const DEFAULT_CHUNK = 64 * 1024;
const ZERO = instreamChunkHeader(0);

export class ClamdClient {
  readonly address: ScannerAddress;
  readonly maxBytes: number;
  readonly timeoutMs: number;
  readonly chunkSize: number;

  constructor(options: ClamdClientOptions) {
    this.address = typeof options.address === 'string' ? parseScannerAddress(options.address) : options.address;
    if (!(options.maxBytes > 0)) throw new RangeError('clamd maxBytes must be positive');
    if (!(options.timeoutMs > 0)) throw new RangeError('clamd timeoutMs must be positive');
    this.maxBytes = options.maxBytes;
    this.timeoutMs = options.timeoutMs;
    this.chunkSize = Math.max(1024, Math.min(options.chunkSize ?? DEFAULT_CHUNK, 16 * 1024 * 1024));
  }

  /** zPING: resolves true on PONG, false on anything else (never rejects). */
  async ping(): Promise<boolean> {
    const r = await this.simple(CLAMD_COMMANDS.PING);
    return r === 'PONG';
  }

  /** zVERSION: the version line, or undefined if clamd did not answer. */
  async version(): Promise<string | undefined> {
    return await this.simple(CLAMD_COMMANDS.VERSION);
  }

  /** Starts an INSTREAM scan; feed it with write(), finish with end(). */
  startStream(): ClamdStream {
    return new ClamdStream(this);
  }

  /** Scans a whole buffer (tests, health checks, the benchmark). */
  async scanBuffer(data: Buffer): Promise<ClamdScanResult> {
    const s = this.startStream();
    s.write(data);
    return await s.end();
  }

  private async simple(command: string): Promise<string | undefined> {
    return await new Promise((resolve) => {
      let reply = '';
      let done = false;
      const sock = connect(connectOptions(this.address));
      const finish = (v: string | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve(v);
      };
      const timer = setTimeout(() => finish(undefined), this.timeoutMs);
      sock.setEncoding('latin1');
      sock.on('connect', () => sock.write(command, 'latin1'));
      sock.on('data', (d: string) => {
        reply += d;
        const nul = reply.indexOf('\0');
        if (nul >= 0) finish(reply.slice(0, nul));
        else if (reply.length > CLAMD_MAX_REPLY) finish(undefined);
      });
      sock.on('error', () => finish(undefined));
      sock.on('close', () => finish(reply.length > 0 ? reply.replace(/[\0\n]+$/, '') : undefined));
    });
  }
}

/** One INSTREAM scan in progress. write() never throws; end() never rejects. */
export class ClamdStream {
  /** Bytes offered by the door. */
  total = 0;
  /** Bytes actually sent to clamd. */
  sent = 0;
  private readonly sock: Socket;
  private reply = '';
  private verdict: ClamdVerdict | undefined;
  private failure: string | undefined;
  private ended = false;
  private settle: ((r: ClamdScanResult) => void) | undefined;
  private result: ClamdScanResult | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private replyTimer: NodeJS.Timeout | undefined;
  /** Doors waiting in drained(). */
  private readonly waiters = new Set<{ progressed(): void; done(): void }>();

  constructor(private readonly client: ClamdClient) {
    this.sock = connect(connectOptions(client.address));
    this.sock.setNoDelay(true);
    this.connectTimer = setTimeout(() => this.fail(`connect timeout after ${client.timeoutMs} ms`), client.timeoutMs);
    this.sock.on('connect', () => {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    });
    this.sock.setEncoding('latin1');
    this.sock.on('data', (d: string) => this.onData(d));
    this.sock.on('error', (err: NodeJS.ErrnoException) => this.fail(`clamd connection error: ${err.code ?? err.message}`));
    this.sock.on('close', () => this.onClose());
    this.sock.write(CLAMD_COMMANDS.INSTREAM, 'latin1');
  }

  /** Bytes written but not yet handed to the kernel (0 once the connection is gone). */
  get backlog(): number {
    return this.sock.destroyed ? 0 : this.sock.writableLength;
  }

  /**
   * Resolves once the backlog is down to SCAN_BACKLOG_RESUME (checked as each write reaches the kernel), or the
   * connection is gone. A clamd that takes nothing for its timeout meanwhile has failed: the connection is closed
   * and the rules decide what that means (tempfail by default).
   */
  drained(): Promise<void> {
    if (this.backlog <= SCAN_BACKLOG_RESUME) return Promise.resolve();
    return new Promise((resolve) => {
      const stall = (): NodeJS.Timeout => setTimeout(() => this.fail(`clamd took no data for ${this.client.timeoutMs} ms`), this.client.timeoutMs);
      let stalled = stall();
      const waiter = {
        progressed: (): void => {
          clearTimeout(stalled);
          stalled = stall();
        },
        done: (): void => {
          clearTimeout(stalled);
          this.sock.off('close', waiter.done);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      this.waiters.add(waiter);
      this.sock.on('close', waiter.done);
    });
  }

  /** A write reached the kernel: clamd took bytes. */
  private readonly onFlushed = (): void => {
    if (this.waiters.size === 0) return;
    const low = this.backlog <= SCAN_BACKLOG_RESUME;
    for (const w of [...this.waiters]) {
      if (low) w.done();
      else w.progressed();
    }
  };

  write(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.ended || this.failure !== undefined || this.verdict !== undefined) return;
    const room = this.client.maxBytes - this.sent;
    if (room <= 0) return;
    const data = chunk.length > room ? chunk.subarray(0, room) : chunk;
    const size = this.client.chunkSize;
    this.sock.cork();
    for (let off = 0; off < data.length; off += size) {
      const piece = data.subarray(off, Math.min(off + size, data.length));
      this.sock.write(instreamChunkHeader(piece.length));
      if (off + size >= data.length) this.sock.write(piece, this.onFlushed);
      else this.sock.write(piece);
    }
    this.sock.uncork();
    this.sent += data.length;
  }

  end(): Promise<ClamdScanResult> {
    if (this.result) return Promise.resolve(this.result);
    if (!this.ended) {
      this.ended = true;
      if (this.failure === undefined && this.verdict === undefined) {
        this.sock.write(ZERO);
        this.replyTimer = setTimeout(() => this.fail(`no answer from clamd within ${this.client.timeoutMs} ms`), this.client.timeoutMs);
      }
    }
    return new Promise((resolve) => {
      this.settle = resolve;
      this.maybeSettle();
    });
  }

  abort(): void {
    this.ended = true;
    if (this.verdict === undefined) this.failure ??= 'aborted';
    this.cleanup();
    this.maybeSettle();
  }

  private onData(d: string): void {
    this.reply += d;
    const nul = this.reply.indexOf('\0');
    if (nul >= 0) {
      this.verdict = parseClamdScanReply(this.reply.slice(0, nul));
      this.cleanup();
      this.maybeSettle();
    } else if (this.reply.length > CLAMD_MAX_REPLY) {
      this.fail('clamd reply too long');
    }
  }

  private onClose(): void {
    if (this.verdict === undefined && this.failure === undefined) {
      // clamd without the z prefix ends replies with a newline and closes; accept that too.
      if (this.reply.length > 0) this.verdict = parseClamdScanReply(this.reply);
      else this.failure = 'clamd closed the connection without an answer';
    }
    this.cleanup();
    this.maybeSettle();
  }

  private fail(reason: string): void {
    if (this.verdict !== undefined || this.failure !== undefined) return;
    this.failure = reason;
    this.cleanup();
    this.maybeSettle();
  }

  private cleanup(): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.replyTimer);
    this.connectTimer = this.replyTimer = undefined;
    if (!this.sock.destroyed) this.sock.destroy();
  }

  private maybeSettle(): void {
    if (!this.settle || !this.ended) return;
    if (this.verdict === undefined && this.failure === undefined) return;
    this.result ??= this.toResult();
    const s = this.settle;
    this.settle = undefined;
    s(this.result);
  }

  private toResult(): ClamdScanResult {
    const v = this.verdict;
    if (v === undefined) return { kind: 'error', message: this.failure ?? 'no answer' };
    const truncated = this.total > this.sent;
    switch (v.kind) {
      case 'virus':
        return { kind: 'virus', name: v.name, bytes: this.sent };
      case 'clean':
        return truncated ? { kind: 'skipped', reason: `too large (${this.total} bytes, ${this.sent} scanned)`, bytes: this.sent } : { kind: 'clean', bytes: this.sent };
      case 'size-limit':
        return { kind: 'skipped', reason: `too large for clamd StreamMaxLength (${v.message})`, bytes: this.sent };
      case 'error':
        return { kind: 'error', message: v.message };
    }
  }
}
