/**
 * DNS name checks and reverse-name builders. The resolver accepts any byte in a label (SPF macros can produce
 * spaces, '%', '=' ...: RFC 2181 §11 says DNS itself has no character restriction), and refuses only what
 * cannot be put on the wire: an empty label, a label over 63 bytes, a name over 255 bytes.
 */
import { isIP } from 'node:net';

export const DNS_NAME_LIMITS = {
  maxLabelBytes: 63, // RFC 1035 §2.3.4
  maxNameBytes: 255, // RFC 1035 §2.3.4, wire form including length octets and the root
} as const;

/** The name without a trailing root dot, lower-cased for use as a cache key. */
export function canonicalName(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

/** Why the name cannot be queried, or undefined when it can. */
export function nameProblem(name: string): string | undefined {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0) return 'empty name';
  let wire = 1; // root label
  for (const label of n.split('.')) {
    const bytes = Buffer.byteLength(label, 'utf8');
    if (bytes === 0) return 'empty label';
    if (bytes > DNS_NAME_LIMITS.maxLabelBytes) return 'label longer than 63 bytes';
    wire += bytes + 1;
  }
  if (wire > DNS_NAME_LIMITS.maxNameBytes) return 'name longer than 255 bytes';
  return undefined;
}

/**
 * The reversed form used by address lists: "2.0.0.127" for 127.0.0.2, and 32 nibbles for IPv6
 * ("1.0.0.0....8.b.d.0.1.0.0.2" for 2001:db8::1). IPv4-mapped IPv6 addresses are treated as IPv4.
 * Returns undefined for anything that is not an IP address.
 */
export function reverseAddress(ip: string): string | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const addr = mapped?.[1] ?? ip;
  const family = isIP(addr);
  if (family === 4) return addr.split('.').reverse().join('.');
  if (family !== 6) return undefined;
  return expandIpv6(addr).split('').reverse().join('.');
}

/** The 32 hex digits of an IPv6 address, no separators (lower case unless `keepCase`). */
export function expandIpv6(ip: string, keepCase = false): string {
  let addr = keepCase ? ip : ip.toLowerCase();
  // embedded IPv4 tail (::ffff:1.2.3.4, 64:ff9b::1.2.3.4)
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr);
  if (v4) {
    const hex = (a: string | undefined, b: string | undefined): string =>
      ((Number(a) << 8) | Number(b)).toString(16);
    addr = addr.slice(0, v4.index) + hex(v4[1], v4[2]) + ':' + hex(v4[3], v4[4]);
  }
  const [head = '', tail] = addr.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const groups = [...h, ...Array<string>(fill).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('');
}
