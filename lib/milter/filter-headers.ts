/**
 * Applies the engine's header mutations to a message while it streams to the next hop (the filter door spools the
 * message first, so eom verdicts can still change headers). Same meaning as the milter's edits:
 *   add     → appended after the last header field (SMFIR_ADDHEADER)
 *   insert  → at position `index` among the header fields, 0 = first (SMFIR_INSHEADER)
 *   change  → the index-th (1-based) field of that name; empty value deletes it; a missing one is added
 *             (SMFIR_CHGHEADER as Sendmail does it)
 * Only the header block is held (bounded); the body passes through untouched.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { HeaderMutation } from '../core/verdict.js';

/** Largest header block rewritten; a longer one passes through unchanged (and `skipped` is set). */
export const MAX_HEADER_BLOCK = 256 * 1024;

/** Splits a header block (without the blank line) into raw fields, each with its folded lines and CRLF. */
export function splitFields(block: string): string[] {
  const fields: string[] = [];
  const lines = block.split(/(?<=\n)/);
  for (const line of lines) {
    if (line === '') continue;
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) fields[fields.length - 1] += line;
    else fields.push(line);
  }
  return fields;
}

function fieldName(raw: string): string {
  const colon = raw.indexOf(':');
  return colon > 0 ? raw.slice(0, colon).trim().toLowerCase() : '';
}

function render(name: string, value: string): string {
  const v = value.replace(/[\r\n]+[ \t]*/g, ' ');
  return `${name}: ${v}\r\n`;
}

export function applyMutations(fields: readonly string[], mutations: readonly HeaderMutation[]): string[] {
  const out = [...fields];
  for (const m of mutations) {
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(m.name)) continue;
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

/** A Transform that rewrites the header block of a CRLF message and passes the body through. */
export class HeaderRewriter extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private done = false;
  /** True when the header block was too large (or never ended) and went out unchanged. */
  skipped = false;

  constructor(private readonly mutations: readonly HeaderMutation[]) {
    super();
    if (mutations.length === 0) this.done = true;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.done) return cb(null, chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const all = this.held.length === 1 ? chunk : Buffer.concat(this.held);
    this.held = [all];
    // The header block ends at the first empty line; a message may also start with it (no headers).
    let end = all.indexOf('\r\n\r\n');
    let blankAt = end >= 0 ? end + 2 : -1;
    if (all.length >= 2 && all[0] === 0x0d && all[1] === 0x0a) blankAt = 0;
    if (blankAt < 0) {
      if (this.heldBytes > MAX_HEADER_BLOCK) this.passThrough(all, cb);
      else cb();
      return;
    }
    end = blankAt;
    const fields = splitFields(all.subarray(0, end).toString('latin1'));
    const head = Buffer.from(applyMutations(fields, this.mutations).join(''), 'latin1');
    this.done = true;
    this.held = [];
    cb(null, Buffer.concat([head, all.subarray(end)]));
  }

  override _flush(cb: TransformCallback): void {
    if (this.done) return cb();
    // The message ended inside its header block: send it as it came.
    const all = Buffer.concat(this.held);
    this.held = [];
    this.skipped = true;
    this.done = true;
    cb(null, all);
  }

  private passThrough(all: Buffer, cb: TransformCallback): void {
    this.skipped = true;
    this.done = true;
    this.held = [];
    cb(null, all);
  }
}
