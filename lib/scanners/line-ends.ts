/**
 * Rewrites bare LF and bare CR to CRLF, across chunk boundaries, so a filter's output can never carry a line
 * end the next hop might read differently from us (SMTP smuggling). CRLF stays as it is.
 */
export class LineEndNormalizer {
  private pendingCR = false;

  push(chunk: Buffer): Buffer {
    const out = Buffer.allocUnsafe(chunk.length * 2 + 2);
    let o = 0;
    let i = 0;
    if (this.pendingCR) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
      if (chunk.length > 0 && chunk[0] === 0x0a) i = 1;
      this.pendingCR = false;
    }
    let start = i;
    for (; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0a) {
        // bare LF (a CRLF's LF is consumed with its CR below)
        o += chunk.copy(out, o, start, i);
        out[o++] = 0x0d;
        out[o++] = 0x0a;
        start = i + 1;
      } else if (b === 0x0d) {
        o += chunk.copy(out, o, start, i);
        if (i + 1 >= chunk.length) {
          this.pendingCR = true;
          start = i + 1;
          continue;
        }
        out[o++] = 0x0d;
        out[o++] = 0x0a;
        if (chunk[i + 1] === 0x0a) i++;
        start = i + 1;
      }
    }
    o += chunk.copy(out, o, start, chunk.length);
    return out.subarray(0, o);
  }

  /** Call at the end: a trailing CR becomes CRLF. */
  flush(): Buffer {
    if (!this.pendingCR) return Buffer.alloc(0);
    this.pendingCR = false;
    return Buffer.from('\r\n');
  }
}
