/**
 * XFORWARD (Postfix XFORWARD_README): decoding what Postfix sends us, encoding what we pass on to the next hop.
 *
 *   XFORWARD 1*( SP name=value )     names case-insensitive, values xtext, each value ≤ 255 characters,
 *                                    the whole command ≤ 512 characters (split into several commands)
 * Values "[UNAVAILABLE]" (any case) mean unknown. "[TEMPUNAVAIL]" is XCLIENT's, not XFORWARD's: Postfix's XFORWARD
 * parser would reject it, so it is treated as unavailable. ADDR carries IPv6 with an "IPv6:" prefix.
 * Pure functions: no I/O.
 */
import { xtextDecode, xtextEncode } from '../smtp/xtext.js';

/** XFORWARD attribute names (XFORWARD_README "XFORWARD Command syntax"). */
export const XFORWARD_ATTR = {
  /** NAME: the up-stream hostname, verified or not. */
  NAME: 'NAME',
  /** ADDR: the up-stream network address (IPv6 with "IPv6:" prefix). */
  ADDR: 'ADDR',
  /** PORT: the up-stream client TCP port. */
  PORT: 'PORT',
  /** PROTO: the protocol the up-stream client spoke (SMTP, ESMTP, ...). */
  PROTO: 'PROTO',
  /** HELO: the hostname the up-stream client announced. */
  HELO: 'HELO',
  /** IDENT: the local message identifier on the up-stream MTA (queue id). */
  IDENT: 'IDENT',
  /** SOURCE: LOCAL or REMOTE origin. */
  SOURCE: 'SOURCE',
} as const;
export type XForwardName = (typeof XFORWARD_ATTR)[keyof typeof XFORWARD_ATTR];
export const XFORWARD_NAMES: readonly XForwardName[] = Object.values(XFORWARD_ATTR);

/** Decoded attributes of the transaction in progress; a missing name = unavailable. */
export type XForwardAttrs = Partial<Record<XForwardName, string>>;

export const UNAVAILABLE = '[UNAVAILABLE]';
/** Longest value (before decoding), as Postfix enforces. */
export const MAX_XFORWARD_VALUE = 255;
/** Longest XFORWARD command line we send, CRLF excluded (RFC 5321 command line limit 512 with CRLF). */
export const MAX_XFORWARD_LINE = 510;

export type XForwardParse = { readonly ok: true; readonly attrs: XForwardAttrs } | { readonly ok: false; readonly reply: string };

function isUnavailable(v: string): boolean {
  const u = v.toUpperCase();
  return u === '[UNAVAILABLE]' || u === '[TEMPUNAVAIL]';
}

/** Decoded values may not hold control characters, whitespace, non-ASCII or header specials. */
function valueProblem(name: XForwardName, v: string): boolean {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f-\uffff]/.test(v)) return true;
  if (name === XFORWARD_ATTR.PORT) return !/^\d{1,5}$/.test(v) || Number(v) > 65535;
  if (name === XFORWARD_ATTR.ADDR) return !/^(ipv6:[0-9a-f:.]+|[0-9.]+)$/i.test(v);
  return false;
}

/**
 * Parses the argument of one XFORWARD command and merges it into `current`. Replies mirror Postfix's own:
 * 501 5.5.4 for a bad name or value.
 */
export function parseXForward(arg: string, current: XForwardAttrs): XForwardParse {
  const parts = arg.split(/[ \t]+/).filter((p) => p !== '');
  if (parts.length === 0) return { ok: false, reply: '501 5.5.4 Syntax: XFORWARD attribute=value...' };
  const next: XForwardAttrs = { ...current };
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq <= 0) return { ok: false, reply: '501 5.5.4 Syntax: XFORWARD attribute=value...' };
    const name = p.slice(0, eq).toUpperCase() as XForwardName;
    if (!XFORWARD_NAMES.includes(name)) return { ok: false, reply: `501 5.5.4 Bad XFORWARD attribute name: ${p.slice(0, Math.min(eq, 32)).replace(/[^\x21-\x7e]/g, '?')}` };
    const raw = p.slice(eq + 1);
    if (raw.length > MAX_XFORWARD_VALUE) return { ok: false, reply: `501 5.5.4 ${name} attribute value too long` };
    let value: string;
    try {
      value = xtextDecode(raw);
    } catch {
      // Postfix < 2.3 sent values without xtext: be lenient.
      value = raw;
    }
    if (isUnavailable(value)) {
      delete next[name];
      continue;
    }
    if (valueProblem(name, value)) return { ok: false, reply: `501 5.5.4 Bad ${name} syntax` };
    next[name] = value;
  }
  return { ok: true, attrs: next };
}

/** The client address an ADDR value names: "IPv6:2001:db8::1" → "2001:db8::1". */
export function xforwardAddress(addr: string): string {
  return /^ipv6:/i.test(addr) ? addr.slice(5) : addr;
}

/** Renders an address for ADDR: IPv6 always with the prefix (Postfix rejects a bare IPv6 address). */
export function addrValue(ip: string): string {
  if (/^ipv6:/i.test(ip)) return `IPv6:${ip.slice(5)}`;
  return ip.includes(':') ? `IPv6:${ip}` : ip;
}

/**
 * XFORWARD command lines (without CRLF) passing `attrs` on to a next hop that announced `supported` names.
 * Unknown values are sent as [UNAVAILABLE] so the next hop does not keep stale ones; values that would be too long
 * after encoding are sent as [UNAVAILABLE] too. Lines stay within 512 characters.
 */
export function encodeXForward(attrs: XForwardAttrs, supported: ReadonlySet<string>): string[] {
  const items: string[] = [];
  for (const name of XFORWARD_NAMES) {
    if (!supported.has(name)) continue;
    const v = attrs[name];
    let enc = v === undefined ? UNAVAILABLE : xtextEncode(name === XFORWARD_ATTR.ADDR ? addrValue(v) : v);
    if (enc.length > MAX_XFORWARD_VALUE) enc = UNAVAILABLE;
    items.push(`${name}=${enc}`);
  }
  const lines: string[] = [];
  let line = '';
  for (const item of items) {
    if (line !== '' && line.length + 1 + item.length > MAX_XFORWARD_LINE) {
      lines.push(line);
      line = '';
    }
    line = line === '' ? `XFORWARD ${item}` : `${line} ${item}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** Attribute names from an EHLO keyword line "XFORWARD NAME ADDR ...". */
export function xforwardNamesFromEhlo(params: string): Set<string> {
  return new Set(params.split(/[ \t]+/).filter((s) => s !== '').map((s) => s.toUpperCase()));
}
