/**
 * Hold mode of the intercept door: the dot-unstuffed message kept until the eom verdict, in a MessageSpool
 * (memory up to a small cap, then a private 0600 file in a 0700 directory; the scanners' spool code), and sent
 * on with every header mutation applied. Also the re-stuffing needed to send held content as DATA bytes.
 *
 * Header mutations mean what they mean for the milter and the filter door (lib/milter/filter-headers.ts, which
 * the intercept door may not import; the two must agree):
 *   add     → appended after the last header field (SMFIR_ADDHEADER)
 *   insert  → at position `index` among the header fields, 0 = first (SMFIR_INSHEADER)
 *   change  → the index-th (1-based) field of that name; an empty value deletes it; a missing one is added
 * The `leading` text (the data-stage trace header) goes before the (edited) header block, as in streaming.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { HeaderMutation } from '../core/verdict.js';
import { MessageSpool } from '../scanners/message-spool.js';

/** Largest header block edited; a longer one is sent unchanged (and `headerSkipped` is set). */
export const MAX_HELD_HEADER_BLOCK = 256 * 1024;
/** Bytes of a held message kept in memory before it spills to a file (default). */
export const DEFAULT_HOLD_MEMORY = 64 * 1024;

const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;

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
      const end = headerEnd(head);
      if (end >= 0) {
        done = true;
        yield Buffer.concat([editBlock(head.subarray(0, end), mutations), head.subarray(end)]);
        continue;
      }
      if (head.length > MAX_HELD_HEADER_BLOCK) {
        done = true;
        this.headerSkipped = true;
        yield head;
      }
    }
    // The message ended inside its header block (no body): the whole of it is the header block.
    if (!done) yield editBlock(head, mutations);
  }

  /** Frees memory and removes the spill file. */
  dispose(): Promise<void> {
    return this.spool.dispose();
  }
}

/** Offset of the blank line ending the header block (the CRLF that starts it), -1 if not seen yet. */
function headerEnd(b: Buffer): number {
  if (b.length >= 2 && b[0] === 0x0d && b[1] === 0x0a) return 0;
  const i = b.indexOf('\r\n\r\n');
  return i < 0 ? -1 : i + 2;
}

function editBlock(block: Buffer, mutations: readonly HeaderMutation[]): Buffer {
  const fields = splitFields(block.toString('latin1'));
  return Buffer.from(applyHeaderMutations(fields, mutations).join(''), 'latin1');
}

/** Splits a header block (without the blank line) into raw fields, each with its folded lines and CRLF. */
export function splitFields(block: string): string[] {
  const fields: string[] = [];
  for (const line of block.split(/(?<=\n)/)) {
    if (line === '') continue;
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) fields[fields.length - 1] += line;
    else fields.push(line.endsWith('\n') ? line : `${line}\r\n`);
  }
  return fields;
}

function fieldName(raw: string): string {
  const colon = raw.indexOf(':');
  return colon > 0 ? raw.slice(0, colon).trim().toLowerCase() : '';
}

/** One header line: the value's own line breaks are folded (CRLF + tab), NUL dropped; never an empty continuation. */
function render(name: string, value: string): string {
  const lines = value
    .replace(/\0/g, '')
    .split(/\r\n|\r|\n/)
    .map((l) => l.trim())
    .filter((l, i) => i === 0 || l !== '');
  return `${name}: ${lines.join('\r\n\t')}\r\n`;
}

export function applyHeaderMutations(fields: readonly string[], mutations: readonly HeaderMutation[]): string[] {
  const out = [...fields];
  for (const m of mutations) {
    if (!FIELD_NAME.test(m.name)) continue;
    if (m.kind === 'add') out.push(render(m.name, m.value));
    else if (m.kind === 'insert') out.splice(Math.max(0, Math.min(m.index, out.length)), 0, render(m.name, m.value));
    else {
      const want = m.name.toLowerCase();
      let seen = 0;
      const at = out.findIndex((f) => fieldName(f) === want && ++seen === Math.max(1, m.index));
      if (at >= 0) {
        if (m.value === '') out.splice(at, 1);
        else out[at] = render(m.name, m.value);
      } else if (m.value !== '') {
        out.push(render(m.name, m.value));
      }
    }
  }
  return out;
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
