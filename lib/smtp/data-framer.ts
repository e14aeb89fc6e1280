/**
 * DATA framing (RFC 5321 §4.1.1.4, §4.5.2): finds the end of the message and undoes dot-stuffing, incrementally,
 * without buffering the message. Only CRLF "." CRLF ends DATA. A bare LF or bare CR anywhere in DATA (the SMTP
 * smuggling vector: "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r") is either
 *  - `reject`: noted, and from that byte on nothing more is passed on (the caller answers 550 at the real end), or
 *  - `normalise`: rewritten to CRLF, and a "." line next to a bare line ending is passed on stuffed (".."), so it
 *    stays message content for the next hop exactly as it does for us.
 * Either way the proxy and the next hop can never disagree about where the message ends.
 * At most two bytes are carried between chunks ("." and ".\r" at a line start, or a trailing CR).
 */

import { NATIVE_DATA_SCAN, type DataScan } from './data-scan.js';

export type BareLineEndingPolicy = 'reject' | 'normalise';

export interface FrameOutput {
  /** Bytes to relay to the next hop (still dot-stuffed), without the final "." line. */
  readonly forward: Buffer[];
  /** Message content, dot-unstuffed (what scanners and header parsing see). */
  readonly content: Buffer[];
  /** True when the final "." line was seen in this chunk. */
  readonly end: boolean;
  /** Bytes after the final "." CRLF (pipelined commands), when end is true. */
  readonly rest?: Buffer;
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');
const DOT_CRLF = Buffer.from('.\r\n');
const DOTDOT_CRLF = Buffer.from('..\r\n');
const ONE_DOT = Buffer.from('.');
const EMPTY = Buffer.alloc(0);

export class DataFramer {
  private atLineStart = true;
  /** The previous line ended in a genuine CRLF (DATA's own CRLF counts). */
  private prevCrlf = true;
  private carry: Buffer = EMPTY;
  private ended = false;
  /** Bare CR/LF bytes seen. */
  bareLineEndings = 0;
  /** The first bare line ending seen, for the log. */
  firstBare: 'cr' | 'lf' | undefined;
  /** Content bytes produced so far. */
  contentBytes = 0;
  /** Raw bytes received so far (dot-stuffed, including the final "."). */
  rawBytes = 0;

  /**
   * `scan`: the fast path that skips ordinary lines (default: the native one when built; `null` forces the
   * JavaScript loop alone, which is the reference the fast path is tested against).
   */
  constructor(
    readonly bare: BareLineEndingPolicy = 'reject',
    scan: DataScan | null = NATIVE_DATA_SCAN ?? null,
  ) {
    this.scan = scan ?? undefined;
  }

  private readonly scan: DataScan | undefined;

  /** In reject mode: a bare line ending was seen, so nothing more is forwarded. */
  get stopped(): boolean {
    return this.bare === 'reject' && this.bareLineEndings > 0;
  }

  get done(): boolean {
    return this.ended;
  }

  push(chunk: Buffer): FrameOutput {
    if (this.ended) return { forward: [], content: [], end: true, rest: chunk };
    this.rawBytes += chunk.length;
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    this.carry = EMPTY;
    const forward: Buffer[] = [];
    const content: Buffer[] = [];
    const n = data.length;
    let i = 0;
    let runStart = 0;
    let nextCr = -2;
    let nextLf = -2;
    const emit = (fwd: Buffer | undefined, cont: Buffer | undefined): void => {
      if (this.stopped) return;
      if (fwd && fwd.length) forward.push(fwd);
      if (cont && cont.length) {
        content.push(cont);
        this.contentBytes += cont.length;
      }
    };
    const flush = (to: number): void => {
      if (to > runStart) {
        const s = data.subarray(runStart, to);
        emit(s, s);
      }
      runStart = to;
    };
    const sawBare = (kind: 'cr' | 'lf'): void => {
      this.bareLineEndings++;
      this.firstBare ??= kind;
    };
    /** A "." line next to a bare line ending: content ".", forwarded stuffed so the next hop keeps it too. */
    const dotLine = (): void => {
      if (this.bare === 'normalise') emit(DOTDOT_CRLF, DOT_CRLF);
    };
    while (i < n) {
      if (this.atLineStart) {
        if (data[i] === DOT) {
          if (i + 1 >= n) {
            flush(i);
            this.carry = data.subarray(i);
            runStart = n;
            break;
          }
          const c1 = data[i + 1];
          if (c1 === CR) {
            if (i + 2 >= n) {
              flush(i);
              this.carry = data.subarray(i);
              runStart = n;
              break;
            }
            if (data[i + 2] === LF) {
              flush(i);
              if (this.prevCrlf) {
                this.ended = true;
                this.rawBytes -= n - (i + 3);
                return { forward, content, end: true, rest: data.subarray(i + 3) };
              }
              dotLine();
              i += 3;
              runStart = i;
              this.prevCrlf = true;
              continue;
            }
            flush(i);
            sawBare('cr');
            dotLine();
            i += 2;
            runStart = i;
            this.prevCrlf = false;
            continue;
          }
          if (c1 === LF) {
            flush(i);
            sawBare('lf');
            dotLine();
            i += 2;
            runStart = i;
            this.prevCrlf = false;
            continue;
          }
          // A stuffed dot: forwarded as is, removed from the content.
          flush(i);
          emit(ONE_DOT, undefined);
          i += 1;
          runStart = i;
        }
        this.atLineStart = false;
      }
      if (this.scan) {
        // Ordinary lines (CRLF-terminated, no leading dot, no bare CR/LF) up to k need nothing: skip them at once.
        const k = this.scan(data, i);
        if (k > i) {
          if (data.lastIndexOf(LF, k - 1) >= i) this.prevCrlf = true;
          i = k;
          nextCr = nextLf = -2;
          const lineStart = data[i - 1] === LF;
          if (i >= n) {
            this.atLineStart = lineStart;
            break;
          }
          if (lineStart) {
            this.atLineStart = true;
            continue;
          }
        }
      }
      if (nextCr < i && nextCr !== -1) nextCr = data.indexOf(CR, i);
      if (nextLf < i && nextLf !== -1) nextLf = data.indexOf(LF, i);
      const j = nextCr === -1 ? nextLf : nextLf === -1 ? nextCr : Math.min(nextCr, nextLf);
      if (j === -1) {
        i = n;
        break;
      }
      if (data[j] === LF) {
        flush(j);
        sawBare('lf');
        if (this.bare === 'normalise') emit(CRLF, CRLF);
        i = j + 1;
        runStart = i;
        this.prevCrlf = false;
        this.atLineStart = true;
        continue;
      }
      if (j + 1 >= n) {
        flush(j);
        this.carry = data.subarray(j);
        runStart = n;
        i = n;
        break;
      }
      if (data[j + 1] === LF) {
        i = j + 2;
        this.prevCrlf = true;
        this.atLineStart = true;
        continue;
      }
      flush(j);
      sawBare('cr');
      if (this.bare === 'normalise') emit(CRLF, CRLF);
      i = j + 1;
      runStart = i;
      this.prevCrlf = false;
      this.atLineStart = true;
    }
    flush(Math.max(runStart, n - this.carry.length));
    return { forward, content, end: false };
  }
}
