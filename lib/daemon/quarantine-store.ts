/**
 * The quarantine: a private directory (0700) holding held messages, each as `<id>.eml` (the message, CRLF,
 * unstuffed, mode 0600) plus `<id>.json` (the sidecar: envelope, client, reason, rule, time, scan results).
 * The sidecar is written last, by rename, so an entry is listed only once it is complete; ids are checked
 * against a strict pattern, so no id can name a path outside the directory.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, createReadStream, mkdirSync, statSync } from 'node:fs';
import { open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { QuarantineSink, QuarantineSinkMeta } from '../core/quarantine-sink.js';

export { quarantineMetaFromTransaction } from '../core/quarantine-sink.js';

export const QUARANTINE_ID = /^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$/;
/** Sidecars larger than this are not read (a sidecar is a few hundred bytes plus the recipients). */
const MAX_SIDECAR = 4 * 1024 * 1024;

/** The sidecar facts: the sink's meta (lib/core/quarantine-sink.ts). */
export type QuarantineMeta = QuarantineSinkMeta;

export interface QuarantineEntry extends QuarantineMeta {
  readonly id: string;
  /** ISO time it was quarantined. */
  readonly time: string;
  readonly size: number;
}

export class QuarantineError extends Error {
  override readonly name = 'QuarantineError';
}

function newId(now: Date): string {
  const iso = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  return `${iso}-${randomBytes(6).toString('hex')}`;
}

export class QuarantineStore implements QuarantineSink {
  constructor(
    readonly dir: string,
    options: { create?: boolean } = {},
  ) {
    if (options.create ?? true) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = statSync(dir);
      if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
    } else if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new QuarantineError(`quarantine directory ${dir} does not exist`);
    }
  }

  messagePath(id: string): string {
    this.check(id);
    return join(this.dir, `${id}.eml`);
  }

  /** Stores a message (a buffer, a stream, or the path of a file to copy) with its sidecar; returns the entry. */
  async add(meta: QuarantineMeta, message: Buffer | Readable | { path: string }, now = new Date()): Promise<QuarantineEntry> {
    const id = newId(now);
    const tmpMsg = join(this.dir, `.tmp-${id}.eml`);
    const tmpJson = join(this.dir, `.tmp-${id}.json`);
    let size = 0;
    const fh = await open(tmpMsg, 'wx', 0o600);
    try {
      if (Buffer.isBuffer(message)) {
        await fh.write(message);
        size = message.length;
      } else {
        const src = 'path' in message && typeof message.path === 'string' && !('pipe' in message) ? createReadStream(message.path) : (message as Readable);
        for await (const chunk of src) {
          const b = chunk as Buffer;
          await fh.write(b);
          size += b.length;
        }
      }
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(tmpMsg, { force: true });
      throw err;
    }
    await fh.close();
    const entry: QuarantineEntry = { id, time: now.toISOString(), size, ...meta };
    await writeFile(tmpJson, JSON.stringify(entry, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    await rename(tmpMsg, join(this.dir, `${id}.eml`));
    await rename(tmpJson, join(this.dir, `${id}.json`));
    return entry;
  }

  /** Complete entries, oldest first. Unreadable sidecars are skipped. */
  async list(): Promise<QuarantineEntry[]> {
    const names = await readdir(this.dir);
    const out: QuarantineEntry[] = [];
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      const id = n.slice(0, -5);
      if (!QUARANTINE_ID.test(id)) continue;
      const e = await this.get(id);
      if (e) out.push(e);
    }
    return out.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.id < b.id ? -1 : 1));
  }

  async get(id: string): Promise<QuarantineEntry | undefined> {
    this.check(id);
    const p = join(this.dir, `${id}.json`);
    const st = await stat(p).catch(() => undefined);
    if (!st || !st.isFile() || st.size > MAX_SIDECAR) return undefined;
    try {
      const v = JSON.parse(await readFile(p, 'utf8')) as QuarantineEntry;
      if (v.id !== id || typeof v.sender !== 'string' || !Array.isArray(v.recipients)) return undefined;
      return v;
    } catch {
      return undefined;
    }
  }

  openMessage(id: string): Readable {
    return createReadStream(this.messagePath(id));
  }

  /** Removes an entry; false if there was none. */
  async remove(id: string): Promise<boolean> {
    this.check(id);
    const had = (await stat(join(this.dir, `${id}.json`)).catch(() => undefined)) !== undefined;
    await rm(join(this.dir, `${id}.json`), { force: true });
    await rm(join(this.dir, `${id}.eml`), { force: true });
    return had;
  }

  private check(id: string): void {
    if (!QUARANTINE_ID.test(id)) throw new QuarantineError(`"${id}" is not a quarantine id`);
  }
}
