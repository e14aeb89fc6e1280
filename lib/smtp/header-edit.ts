/**
 * Header edits on a CRLF message's header block: the one implementation behind the filter door
 * (lib/milter/filter-headers.ts, while streaming) and the intercept door's hold mode (lib/intercept/held-message.ts).
 * The mutations mean what they mean for the milter:
 *   add     → appended after the last header field (SMFIR_ADDHEADER)
 *   insert  → at position `index` among the header fields, 0 = first (SMFIR_INSHEADER)
 *   change  → the index-th (1-based) field of that name; an empty value deletes it; a missing one is added
 *             (SMFIR_CHGHEADER as Sendmail does it)
 * A value's own line breaks never start a new field: the `style` says whether they are folded (CRLF + tab) or
 * joined into one line.
 */
import type { HeaderMutation } from '../core/verdict.js';

/** Largest header block edited; a longer one goes out unchanged. */
export const MAX_HEADER_BLOCK = 256 * 1024;

/** How a door renders edited fields. */
export interface HeaderEditStyle {
  /**
   * 'fold': a value's line breaks become CRLF + tab continuations (blank continuations dropped), NULs dropped;
   * 'join': every line break (with the whitespace after it) becomes one space.
   */
  readonly lineBreaks: 'fold' | 'join';
  /** Longest field name accepted; an edit with a longer (or otherwise invalid) name is skipped. */
  readonly maxNameLength?: number;
}

/** Printable US-ASCII except ':' (RFC 5322 §3.6.8 ftext). */
const FTEXT = /^[\x21-\x39\x3b-\x7e]+$/;

/** Offset of the blank line ending the header block (the CRLF that starts it), -1 if not seen yet. */
export function headerBlockEnd(b: Buffer): number {
  // A message may also start with the empty line (no headers).
  if (b.length >= 2 && b[0] === 0x0d && b[1] === 0x0a) return 0;
  const i = b.indexOf('\r\n\r\n');
  return i < 0 ? -1 : i + 2;
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

/** One header field with its CRLF; see HeaderEditStyle.lineBreaks. */
function render(name: string, value: string, style: HeaderEditStyle): string {
  if (style.lineBreaks === 'join') return `${name}: ${value.replace(/[\r\n]+[ \t]*/g, ' ')}\r\n`;
  const lines = value
    .replace(/\0/g, '')
    .split(/\r\n|\r|\n/)
    .map((l) => l.trim())
    .filter((l, i) => i === 0 || l !== '');
  return `${name}: ${lines.join('\r\n\t')}\r\n`;
}

/** The fields with the mutations applied, in order. */
export function applyHeaderMutations(fields: readonly string[], mutations: readonly HeaderMutation[], style: HeaderEditStyle): string[] {
  const out = [...fields];
  for (const m of mutations) {
    if (!FTEXT.test(m.name) || (style.maxNameLength !== undefined && m.name.length > style.maxNameLength)) continue;
    if (m.kind === 'add') out.push(render(m.name, m.value, style));
    else if (m.kind === 'insert') out.splice(Math.max(0, Math.min(m.index, out.length)), 0, render(m.name, m.value, style));
    else {
      const want = m.name.toLowerCase();
      let seen = 0;
      const at = out.findIndex((f) => fieldName(f) === want && ++seen === Math.max(1, m.index));
      if (at >= 0) {
        if (m.value === '') out.splice(at, 1);
        else out[at] = render(m.name, m.value, style);
      } else if (m.value !== '') {
        out.push(render(m.name, m.value, style));
      }
    }
  }
  return out;
}

/** A header block (latin1 bytes, without the blank line) with the mutations applied. */
export function editHeaderBlock(block: Buffer, mutations: readonly HeaderMutation[], style: HeaderEditStyle): Buffer {
  return Buffer.from(applyHeaderMutations(splitFields(block.toString('latin1')), mutations, style).join(''), 'latin1');
}
