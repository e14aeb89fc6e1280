/**
 * Hold mode of the intercept door: the dot-unstuffed message kept until the eom verdict, in a MessageSpool
 * (memory up to a small cap, then a private 0600 file in a 0700 directory; the scanners' spool code), and sent
 * on with every header mutation applied. Also the re-stuffing needed to send held content as DATA bytes.
 *
 * Header mutations mean what they mean for the milter and the filter door: the edit logic is lib/smtp/header-edit.ts,
 * shared with the filter door (lib/milter/filter-headers.ts). The `leading` text (the data-stage trace header) goes before the (edited) header block, as in streaming.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { HeaderMutation } from '../core/verdict.js';
import { MessageSpool } from '../scanners/message-spool.js';
import { applyHeaderMutations as applyEdits, editHeaderBlock, headerBlockEnd, MAX_HEADER_BLOCK, type HeaderEditStyle } from '../smtp/header-edit.js';

export { splitFields } from '../smtp/header-edit.js';

/** Largest header block edited; a longer one is sent unchanged (and `headerSkipped` is set). */
export const MAX_HELD_HEADER_BLOCK = MAX_HEADER_BLOCK;
/** Bytes of a held message kept in memory before it spills to a file (default). */
export const DEFAULT_HOLD_MEMORY = 64 * 1024;

/** Hold mode's edits: a value's line breaks are folded (CRLF + tab), NULs dropped; field names of 1-76 characters. */
export const HELD_HEADER_STYLE: HeaderEditStyle = { lineBreaks: 'fold', maxNameLength: 76 };

export interface HeldMessageOptions {
  /** Most content bytes held; the caller falls back to streaming before writing past it. */
  readonly limit: number;
  /** Bytes kept in memory before spilling to a private file. */
  readonly memory?: number;
  /** Private directory (0700) for the spill file, asked for at the first spill. */
  readonly dir: () => string;
}

export class HeldMessage {
  private readonly spool: MessageSpool;
  /** The header block was over MAX_HELD_HEADER_BLOCK (or malformed) and went out unchanged. */
  headerSkipped = false;

  constructor(readonly options: HeldMessageOptions) {
    this.spool = new MessageSpool({ capacity: options.limit, memoryLimit: Math.min(options.limit, options.memory ?? DEFAULT_HOLD_MEMORY), dir: options.dir });
  }

  /** Content bytes held so far. */
  get size(): number {
    return this.spool.size;
  }

  /** True when `bytes` more would not fit. */
  wouldOverflow(bytes: number): boolean {
    return this.spool.size + bytes > this.options.limit;
  }

  write(content: Buffer): void {
    this.spool.write(content);
  }

  /** Waits until every byte is stored; rejects if the spill file could not be written. */
  finish(): Promise<void> {
    return this.spool.finish();
  }

  /** The held content as it was received (after finish()). */
  raw(): Readable {
    return this.spool.open();
  }

  /**
   * The held content with `leading` first and the mutations applied to its header block (after finish()).
   * `replacement`: a file holding the message to send instead (the filter command's rewritten message, CRLF).
   */
  edited(leading: string, mutations: readonly HeaderMutation[], replacement?: string): Readable {
    return Readable.from(this.editedChunks(leading, mutations, replacement), { objectMode: false });
  }

  private async *editedChunks(leading: string, mutations: readonly HeaderMutation[], replacement: string | undefined): AsyncGenerator<Buffer> {
    if (leading !== '') yield Buffer.from(leading, 'latin1');
    const src = replacement !== undefined ? createReadStream(replacement, { highWaterMark: 64 * 1024 }) : this.spool.open();
    if (mutations.length === 0) {
      for await (const c of src) yield c as Buffer;
      return;
    }
    let head: Buffer = Buffer.alloc(0);
    let done = false;
    for await (const c of src) {
      const chunk = c as Buffer;
      if (done) {
        yield chunk;
        continue;
      }
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = headerBlockEnd(head);
      if (end >= 0) {
        done = true;
        yield Buffer.concat([editHeaderBlock(head.subarray(0, end), mutations, HELD_HEADER_STYLE), head.subarray(end)]);
        continue;
      }
      if (head.length > MAX_HELD_HEADER_BLOCK) {
        done = true;
        this.headerSkipped = true;
        yield head;
      }
    }
    // The message ended inside its header block (no body): the whole of it is the header block.
    if (!done) yield editHeaderBlock(head, mutations, HELD_HEADER_STYLE);
  }

  /** Frees memory and removes the spill file. */
  dispose(): Promise<void> {
    return this.spool.dispose();
  }
}

export function applyHeaderMutations(fields: readonly string[], mutations: readonly HeaderMutation[]): string[] {
  return applyEdits(fields, mutations, HELD_HEADER_STYLE);
}

/** Dot-stuffing of CRLF content for the DATA wire (RFC 5321 §4.5.2), chunk by chunk; the final "." is the caller's. */
export class DotStuffState {
  private atLineStart = true;

  stuff(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    const parts: Buffer[] = [];
    let from = 0;
    if (this.atLineStart && chunk[0] === 0x2e) parts.push(DOT);
    let idx = chunk.indexOf('\n.');
    while (idx !== -1) {
      parts.push(chunk.subarray(from, idx + 1), DOT);
      from = idx + 1;
      idx = chunk.indexOf('\n.', idx + 1);
    }
    this.atLineStart = chunk[chunk.length - 1] === 0x0a;
    if (parts.length === 0) return chunk;
    parts.push(chunk.subarray(from));
    return Buffer.concat(parts);
  }

  /** True when the bytes so far end at a line start (a final "." may follow directly). */
  get lineStart(): boolean {
    return this.atLineStart;
  }
}

const DOT = Buffer.from('.');
