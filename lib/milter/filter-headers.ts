/**
 * Applies the engine's header mutations to a message while it streams to the next hop (the filter door spools the
 * message first, so eom verdicts can still change headers). The edits themselves (same meaning as the milter's)
 * are lib/smtp/header-edit.ts, shared with the intercept door's hold mode.
 * Only the header block is held (bounded); the body passes through untouched.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { HeaderMutation } from '../core/verdict.js';
import { applyHeaderMutations, editHeaderBlock, headerBlockEnd, MAX_HEADER_BLOCK, type HeaderEditStyle } from '../smtp/header-edit.js';

export { MAX_HEADER_BLOCK, splitFields } from '../smtp/header-edit.js';

/** The filter door's edits: a value's line breaks are joined into one line; any valid field name. */
export const FILTER_HEADER_STYLE: HeaderEditStyle = { lineBreaks: 'join' };

export function applyMutations(fields: readonly string[], mutations: readonly HeaderMutation[]): string[] {
  return applyHeaderMutations(fields, mutations, FILTER_HEADER_STYLE);
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
    const end = headerBlockEnd(all);
    if (end < 0) {
      if (this.heldBytes > MAX_HEADER_BLOCK) this.passThrough(all, cb);
      else cb();
      return;
    }
    const head = editHeaderBlock(all.subarray(0, end), this.mutations, FILTER_HEADER_STYLE);
    this.done = true;
    this.held = [];
    cb(null, Buffer.concat([head, all.subarray(end)]));
  }

  override _flush(cb: TransformCallback): void {
    if (this.done) return cb();
    // The message ended inside its header block (no body, or empty): the whole of it is the header block, as in
    // the intercept door's hold mode. RFC 5322 §3.5: the body, and the blank line before it, are optional.
    // Content that does not end in CRLF (which SMTP cannot deliver) goes out as it came.
    const all = Buffer.concat(this.held);
    this.held = [];
    this.done = true;
    const whole = all.length === 0 || (all.length >= 2 && all[all.length - 2] === 0x0d && all[all.length - 1] === 0x0a);
    if (!whole) this.skipped = true;
    cb(null, whole ? editHeaderBlock(all, this.mutations, FILTER_HEADER_STYLE) : all);
  }

  private passThrough(all: Buffer, cb: TransformCallback): void {
    this.skipped = true;
    this.done = true;
    this.held = [];
    cb(null, all);
  }
}
