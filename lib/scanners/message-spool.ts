/**
 * A bounded copy of one message for scanners that need the whole message before they start (spamd needs
 * Content-length first; the filter command reads a file or stdin). Kept in memory up to `memoryLimit`, then
 * spilled to a private temp file (mode 0600, in a directory of mode 0700). Stops storing past `capacity` but
 * keeps counting, so callers can tell "too large" from "empty".
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, constants as fsc } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';

export interface MessageSpoolOptions {
  /** Most bytes kept; beyond it the spool only counts. */
  readonly capacity: number;
  /** Bytes kept in memory before spilling to a file. */
  readonly memoryLimit: number;
  /** Private directory (0700) for the spill file, or a function giving it (called at the first spill). */
  readonly dir: string | (() => string);
  /** Compute a SHA-256 of the stored bytes (to tell whether a filter changed the message). */
  readonly hash?: boolean;
}

/** Creates a file that must not exist yet, mode 0600. */
export async function createPrivateFile(dir: string, prefix: string): Promise<{ path: string; fh: FileHandle }> {
  const path = join(dir, `${prefix}${randomBytes(9).toString('hex')}`);
  const fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0), 0o600);
  return { path, fh };
}

export class MessageSpool {
  /** Bytes offered so far (also past capacity). */
  size = 0;
  /** Bytes stored. */
  stored = 0;
  private chunks: Buffer[] = [];
  private file: { path: string; fh: FileHandle } | undefined;
  private pending: Promise<void> = Promise.resolve();
  private error: Error | undefined;
  private readonly hasher: Hash | undefined;
  private digestValue: string | undefined;
  private disposed = false;
  private spilled = false;
  /** Bytes queued for the spill file but not written yet. */
  private queued = 0;

  constructor(private readonly options: MessageSpoolOptions) {
    this.hasher = options.hash ? createHash('sha256') : undefined;
  }

  get overflow(): boolean {
    return this.size > this.options.capacity;
  }

  /** The path of the spill file, if the message went to disk. */
  get path(): string | undefined {
    return this.file?.path;
  }

  write(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.disposed || this.error) return;
    const room = this.options.capacity - this.stored;
    if (room <= 0) return;
    const data = chunk.length > room ? Buffer.from(chunk.subarray(0, room)) : Buffer.from(chunk);
    this.stored += data.length;
    this.hasher?.update(data);
    if (!this.spilled && this.stored <= this.options.memoryLimit) {
      this.chunks.push(data);
      return;
    }
    if (!this.spilled) {
      this.spilled = true;
      const earlier = this.chunks;
      this.chunks = [];
      this.pending = this.pending.then(async () => {
        const dir = typeof this.options.dir === 'string' ? this.options.dir : this.options.dir();
        this.file = await createPrivateFile(dir, 'spool-');
        for (const c of earlier) await this.file.fh.write(c);
      });
    }
    this.queued += data.length;
    this.pending = this.pending.then(async () => {
      try {
        await this.file?.fh.write(data);
      } finally {
        this.queued -= data.length;
      }
    });
    this.pending = this.pending.catch((err: Error) => {
      this.error ??= err;
    });
  }

  /** Bytes queued for the spill file and not written yet (the in-memory part below memoryLimit is not a backlog). */
  get backlog(): number {
    return this.queued;
  }

  /** Resolves once every queued write is done (never rejects; finish() reports a failure). */
  drained(): Promise<void> {
    return this.pending.then(
      () => undefined,
      () => undefined,
    );
  }

  /** Waits for every write to reach the file; rejects if writing failed. */
  async finish(): Promise<void> {
    await this.pending;
    if (this.error) throw this.error;
    if (this.file) {
      await this.file.fh.close().catch(() => undefined);
    }
  }

  /** SHA-256 (hex) of the stored bytes; only with `hash: true`, after finish(). */
  digest(): string | undefined {
    if (!this.hasher) return undefined;
    this.digestValue ??= this.hasher.digest('hex');
    return this.digestValue;
  }

  /** A fresh stream of the stored bytes (call after finish()). */
  open(): Readable {
    if (this.file) return createReadStream(this.file.path, { highWaterMark: 64 * 1024 });
    return Readable.from(this.chunks, { objectMode: false });
  }

  /** The stored bytes in memory (only when not spilled). */
  inMemory(): readonly Buffer[] | undefined {
    return this.file ? undefined : this.chunks;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.chunks = [];
    await this.pending.catch(() => undefined);
    const f = this.file;
    this.file = undefined;
    if (f) {
      await f.fh.close().catch(() => undefined);
      await rm(f.path, { force: true });
    }
  }
}
