/**
 * Collects the header block of a message from its (dot-unstuffed) content stream, bounded (RFC 5322 §2.2:
 * "name: value", folded lines start with SP or HT, a blank line ends the block). Bytes past the cap are not kept;
 * the block is then reported as truncated with the headers complete so far.
 */

import { isUtf8 } from 'node:buffer';

export interface HeaderBlock {
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The header block was longer than the cap (or the message ended inside it). */
  readonly truncated: boolean;
  /** Bytes of the header block, blank line included (when complete). */
  readonly bytes: number;
}

export const DEFAULT_HEADER_CAP = 256 * 1024;
export const MAX_HEADERS = 2000;

export class HeaderCollector {
  private chunks: Buffer[] = [];
  private held = 0;
  private result: HeaderBlock | undefined;
  /** Last bytes seen, to find a blank line split across chunks. */
  private tail = '';

  constructor(readonly cap = DEFAULT_HEADER_CAP) {}

  get done(): boolean {
    return this.result !== undefined;
  }

  /** Feeds content; returns the header block once, when it is complete (or over the cap). */
  push(chunk: Buffer): HeaderBlock | undefined {
    if (this.result) return undefined;
    // Search for the blank line in (tail + chunk) without copying the whole chunk into a string.
    const probe = this.tail + chunk.subarray(0, Math.min(chunk.length, 3)).toString('latin1');
    let endAt = -1;
    const tailHit = findBlank(probe);
    if (tailHit !== -1 && tailHit - this.tail.length < 3) {
      endAt = tailHit - this.tail.length; // offset in chunk where the block ends (may be <= 0)
    } else {
      const a = chunk.indexOf('\r\n\r\n');
      const b = chunk.indexOf('\n\n');
      const pa = a === -1 ? -1 : a + 4;
      const pb = b === -1 ? -1 : b + 2;
      endAt = pa === -1 ? pb : pb === -1 ? pa : Math.min(pa, pb);
    }
    if (this.held === 0 && this.tail === '' && (chunk[0] === 0x0a || (chunk[0] === 0x0d && chunk[1] === 0x0a))) {
      // The message starts with a blank line: no headers at all.
      this.result = { headers: [], truncated: false, bytes: chunk[0] === 0x0a ? 1 : 2 };
      return this.result;
    }
    if (endAt !== -1) {
      const take = Math.max(0, endAt);
      if (this.held + take > this.cap) return this.overflow();
      this.chunks.push(chunk.subarray(0, take));
      this.held += take;
      this.result = { headers: parseHeaderBlock(decodeHeaderBytes(Buffer.concat(this.chunks))), truncated: false, bytes: this.held };
      this.chunks = [];
      return this.result;
    }
    if (this.held + chunk.length > this.cap) return this.overflow();
    this.chunks.push(chunk);
    this.held += chunk.length;
    const last = this.tail + chunk.subarray(Math.max(0, chunk.length - 3)).toString('latin1');
    this.tail = last.slice(-3);
    return undefined;
  }

  /** The message ended: returns whatever was collected, if the block never completed. */
  finish(): HeaderBlock | undefined {
    if (this.result) return undefined;
    this.result = { headers: parseHeaderBlock(decodeHeaderBytes(Buffer.concat(this.chunks))), truncated: true, bytes: this.held };
    this.chunks = [];
    return this.result;
  }

  private overflow(): HeaderBlock {
    this.result = { headers: parseHeaderBlock(decodeHeaderBytes(Buffer.concat(this.chunks))), truncated: true, bytes: this.held };
    this.chunks = [];
    return this.result;
  }
}

/** RFC 6532 headers are UTF-8; anything else is read byte for byte. */
function decodeHeaderBytes(b: Buffer): string {
  return isUtf8(b) ? b.toString('utf8') : b.toString('latin1');
}

/** Offset just past the first blank line in s, or -1. */
function findBlank(s: string): number {
  const a = s.indexOf('\r\n\r\n');
  const b = s.indexOf('\n\n');
  const pa = a === -1 ? -1 : a + 4;
  const pb = b === -1 ? -1 : b + 2;
  return pa === -1 ? pb : pb === -1 ? pa : Math.min(pa, pb);
}

/** Parses "Name: value" fields with folding; lines that are not fields are ignored. Values are unfolded, trimmed. */
export function parseHeaderBlock(text: string): Array<readonly [string, string]> {
  const out: Array<readonly [string, string]> = [];
  let name: string | undefined;
  let value = '';
  const pushCurrent = (): void => {
    if (name !== undefined && out.length < MAX_HEADERS) out.push([name, value.trim()] as const);
    name = undefined;
    value = '';
  };
  for (const line of text.split(/\r?\n/)) {
    if (line === '') break;
    if ((line.startsWith(' ') || line.startsWith('\t')) && name !== undefined) {
      value += ' ' + line.trim();
      continue;
    }
    pushCurrent();
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const n = line.slice(0, colon);
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(n)) continue;
    name = n;
    value = line.slice(colon + 1);
  }
  pushCurrent();
  return out;
}
