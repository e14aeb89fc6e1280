/**
 * Capped line reader for SMTP commands and replies (RFC 5321 §2.3.8: lines end in CRLF).
 * Pull-based: push() bytes as they arrive, then call next() until it returns undefined. A line never grows past
 * `cap` bytes in memory: a longer line is skipped and reported once, with its full byte count, when its LF arrives.
 * A bare LF also ends a line (liberal in what we accept); `ending` tells which form was seen.
 */

export type LineEvent =
  | { readonly kind: 'line'; /** Without the line ending. */ readonly line: Buffer; readonly ending: 'crlf' | 'lf' }
  | { readonly kind: 'too-long'; /** Bytes of the whole line, ending included. */ readonly bytes: number };

const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  /** > 0 while skipping the rest of a line longer than the cap: bytes skipped so far. */
  private skipping = 0;

  /** @param cap longest line kept, line ending included */
  constructor(readonly cap: number) {
    if (!Number.isInteger(cap) || cap < 3) throw new RangeError('line cap must be an integer >= 3');
  }

  /** Bytes held and not yet returned as lines. */
  get buffered(): number {
    return this.buf.length - this.off;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.off >= this.buf.length) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
    }
    this.off = 0;
  }

  /** The next complete line, a too-long report, or undefined when more bytes are needed. */
  next(): LineEvent | undefined {
    const { buf } = this;
    if (this.off >= buf.length) return undefined;
    const idx = buf.indexOf(LF, this.off);
    if (this.skipping > 0) {
      if (idx === -1) {
        this.skipping += buf.length - this.off;
        this.drop();
        return undefined;
      }
      const bytes = this.skipping + (idx + 1 - this.off);
      this.skipping = 0;
      this.advance(idx + 1);
      return { kind: 'too-long', bytes };
    }
    if (idx === -1) {
      if (buf.length - this.off > this.cap) {
        this.skipping = buf.length - this.off;
        this.drop();
      }
      return undefined;
    }
    const len = idx + 1 - this.off;
    if (len > this.cap) {
      this.advance(idx + 1);
      return { kind: 'too-long', bytes: len };
    }
    const crlf = idx > this.off && buf[idx - 1] === CR;
    const line = buf.subarray(this.off, crlf ? idx - 1 : idx);
    this.advance(idx + 1);
    return { kind: 'line', line, ending: crlf ? 'crlf' : 'lf' };
  }

  /** Removes and returns every byte not yet returned (e.g. message data that follows a DATA command). */
  takeRest(): Buffer {
    const rest = this.buf.subarray(this.off);
    this.drop();
    return rest;
  }

  /** True while in the middle of a too-long line. */
  get inLongLine(): boolean {
    return this.skipping > 0;
  }

  private advance(to: number): void {
    this.off = to;
    if (this.off >= this.buf.length) this.drop();
  }

  private drop(): void {
    this.buf = Buffer.alloc(0);
    this.off = 0;
  }
}
