/**
 * xtext (RFC 3461 §4): printable ASCII 33..126 except "+" and "=" as is, everything else as "+HH".
 * Used for XFORWARD attribute values and DSN parameters.
 */
import { ProtocolError } from '../core/errors.js';

export function xtextEncode(value: string | Buffer): string {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  let out = '';
  for (const b of bytes) {
    if (b >= 33 && b <= 126 && b !== 0x2b && b !== 0x3d) out += String.fromCharCode(b);
    else out += '+' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** Decodes xtext to bytes; throws ProtocolError on a malformed escape or a character xtext does not allow. */
export function xtextDecodeBytes(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new ProtocolError('malformed xtext escape', 'xtext', i);
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (c >= 33 && c <= 126 && c !== 0x3d) {
      out.push(c);
    } else {
      throw new ProtocolError('character not allowed in xtext', 'xtext', i);
    }
  }
  return Buffer.from(out);
}

export function xtextDecode(text: string): string {
  return xtextDecodeBytes(text).toString('utf8');
}
