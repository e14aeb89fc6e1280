import { isIP } from 'node:net';
import type { Endpoint } from '../core/stage.js';

/** IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes plain IPv4; IPv6 is lower-cased and zone ids are kept. */
export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  const m = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(lower);
  if (m && m[1] !== undefined && isIP(m[1]) === 4) return m[1];
  return lower;
}

export function ipFamily(ip: string): 4 | 6 {
  return isIP(ip) === 6 ? 6 : 4;
}

/** "1.2.3.4:25" or "[::1]:25". */
export function formatEndpoint(e: Endpoint): string {
  return ipFamily(e.ip) === 6 ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
}

/** 16 bytes for IPv6, 4 for IPv4, or undefined if not an address. */
export function ipToBytes(ip: string): Uint8Array | undefined {
  const n = normalizeIp(ip);
  const fam = isIP(n);
  if (fam === 4) {
    const parts = n.split('.').map((p) => Number(p));
    return Uint8Array.from(parts);
  }
  if (fam !== 6) return undefined;
  let addr = n;
  const pct = addr.indexOf('%');
  if (pct >= 0) addr = addr.slice(0, pct);
  // Expand an embedded IPv4 tail into two hex groups.
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  if (v4) {
    const b = v4.slice(1).map((x) => Number(x));
    const g1 = (((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16);
    const g2 = (((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16);
    addr = addr.slice(0, v4.index) + `${g1}:${g2}`;
  }
  const halves = addr.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const fill = 8 - head.length - tail.length;
  const groups = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...tail];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = (v >> 8) & 0xff;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

/** Canonical text for 4 or 16 address bytes (IPv4-mapped IPv6 comes out as IPv4). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] ?? 0) << 8) | (b[i + 1] ?? 0));
  // Longest run of zero groups (length >= 2) becomes "::" (RFC 5952).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export interface Cidr {
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

/** Parses "10.0.0.0/8", "::1/128" or a bare address (full-length prefix). Undefined if malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const ip = slash >= 0 ? text.slice(0, slash) : text;
  const bytes = ipToBytes(ip.trim());
  if (!bytes) return undefined;
  const max = bytes.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1).trim();
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    // An IPv4-mapped IPv6 CIDR was normalised to 4 bytes: shift its prefix.
    if (bytes.length === 4 && isIP(ip.trim()) === 6) prefix -= 96;
    if (prefix < 0 || prefix > max) return undefined;
  }
  return { bytes, prefix };
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  const b = ipToBytes(ip);
  if (!b || b.length !== cidr.bytes.length) return false;
  let bits = cidr.prefix;
  for (let i = 0; i < b.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((b[i] ?? 0) & mask) !== ((cidr.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

export function endpointEquals(a: Endpoint, b: Endpoint): boolean {
  if (a.port !== b.port) return false;
  const x = ipToBytes(a.ip);
  const y = ipToBytes(b.ip);
  if (!x || !y || x.length !== y.length) return false;
  return x.every((v, i) => v === y[i]);
}

export function isWildcard(ip: string): boolean {
  const n = normalizeIp(ip);
  return n === '0.0.0.0' || n === '::' || n === '';
}
