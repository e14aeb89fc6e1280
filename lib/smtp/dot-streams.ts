/**
 * Dot-stuffing as Transform streams (RFC 5321 §4.5.2), for doors that originate or terminate DATA.
 * DotStuffer: message content (CRLF lines) in, DATA wire bytes out, ending with "." CRLF.
 * DotUnstuffer: DATA wire bytes in (up to and including the final "."), content out; bytes after the final "."
 * are emitted as the 'rest' event. unstuff(stuff(x)) = x for CRLF-terminated content.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { DataFramer, type BareLineEndingPolicy } from './data-framer.js';
import { ProtocolError } from '../core/errors.js';

export class DotStuffer extends Transform {
  private atLineStart = true;
  private lastTwo = '\r\n';

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (chunk.length === 0) return cb();
    const parts: Buffer[] = [];
    let from = 0;
    if (this.atLineStart && chunk[0] === 0x2e) parts.push(Buffer.from('.'));
    let idx = chunk.indexOf('\n.', 0);
    while (idx !== -1) {
      parts.push(chunk.subarray(from, idx + 1), Buffer.from('.'));
      from = idx + 1;
      idx = chunk.indexOf('\n.', idx + 1);
    }
    parts.push(chunk.subarray(from));
    this.atLineStart = chunk[chunk.length - 1] === 0x0a;
    this.lastTwo = (this.lastTwo + chunk.subarray(Math.max(0, chunk.length - 2)).toString('latin1')).slice(-2);
    cb(null, parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  override _flush(cb: TransformCallback): void {
    cb(null, Buffer.from(this.lastTwo === '\r\n' ? '.\r\n' : '\r\n.\r\n'));
  }
}

export class DotUnstuffer extends Transform {
  private readonly framer: DataFramer;

  constructor(bare: BareLineEndingPolicy = 'normalise') {
    super();
    this.framer = new DataFramer(bare);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.framer.push(chunk);
    for (const c of out.content) this.push(c);
    if (out.end && out.rest && out.rest.length > 0) this.emit('rest', out.rest);
    if (this.framer.stopped) return cb(new ProtocolError('bare CR or LF in DATA', 'smtp'));
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (!this.framer.done) return cb(new ProtocolError('DATA ended without CRLF.CRLF', 'smtp'));
    cb();
  }
}
