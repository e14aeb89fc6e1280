/**
 * Answer-code sets for DNS lists: which A records mean "listed" and which mean "the list refused us".
 * Entries are IPv4 addresses, ranges "a-b" or CIDRs "a/n" (list answers are A records).
 */
import { isIPv4 } from 'node:net';

export type Ipv4Range = readonly [lo: number, hi: number];

export function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
}

/** The range an entry denotes, or a message saying what is wrong with it. */
export function parseCodeEntry(entry: string): Ipv4Range | string {
  const e = entry.trim();
  const range = /^([^-\s]+)\s*-\s*([^-\s]+)$/.exec(e);
  if (range && range[1] !== undefined && range[2] !== undefined) {
    if (!isIPv4(range[1]) || !isIPv4(range[2])) return `not an IPv4 range: ${JSON.stringify(entry)}`;
    const lo = ipv4ToInt(range[1]);
    const hi = ipv4ToInt(range[2]);
    return lo <= hi ? [lo, hi] : `range runs backwards: ${JSON.stringify(entry)}`;
  }
  const cidr = /^([^/\s]+)\/(\d{1,2})$/.exec(e);
  if (cidr && cidr[1] !== undefined && cidr[2] !== undefined) {
    const bits = Number(cidr[2]);
    if (!isIPv4(cidr[1]) || bits > 32) return `not an IPv4 CIDR: ${JSON.stringify(entry)}`;
    const size = 2 ** (32 - bits);
    const lo = Math.floor(ipv4ToInt(cidr[1]) / size) * size;
    return [lo, lo + size - 1];
  }
  if (isIPv4(e)) {
    const v = ipv4ToInt(e);
    return [v, v];
  }
  return `not an IPv4 address, range or CIDR: ${JSON.stringify(entry)}`;
}

export class CodeSet {
  private constructor(private readonly ranges: readonly Ipv4Range[]) {}

  /** Builds the set, or throws an Error naming every bad entry. */
  static parse(entries: readonly string[], what: string): CodeSet {
    const ranges: Ipv4Range[] = [];
    const problems: string[] = [];
    for (const e of entries) {
      const r = parseCodeEntry(e);
      if (typeof r === 'string') problems.push(r);
      else ranges.push(r);
    }
    if (problems.length > 0) throw new Error(`${what}: ${problems.join('; ')}`);
    return new CodeSet(ranges);
  }

  has(ip: string): boolean {
    if (!isIPv4(ip)) return false;
    const v = ipv4ToInt(ip);
    return this.ranges.some(([lo, hi]) => v >= lo && v <= hi);
  }
}

export const LOOPBACK_NET = CodeSet.parse(['127.0.0.0/8'], 'loopback');
