/**
 * IPv4/IPv6 addresses and CIDR prefixes as integers: IPv4 as one uint32, IPv6 as four uint32 words,
 * so matching a list of prefixes is a few integer operations per distinct prefix length, with no BigInt
 * and no allocation per check.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface ParsedIp {
  readonly v6: boolean;
  /** IPv4: [addr]; IPv6: four words, most significant first. */
  readonly words: readonly number[];
}

/** Parses an address; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4. Accepts "[...]" brackets and an "IPv6:" tag. */
export function parseIp(text: string): ParsedIp | undefined {
  let s = text;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.length > 6 && s.slice(0, 5).toLowerCase() === 'ipv6:') s = s.slice(5);
  if (isIPv4(s)) return { v6: false, words: [v4ToInt(s)] };
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  if (!isIPv6(s)) return undefined;
  const words = v6ToWords(s);
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return { v6: false, words: [words[3] as number] };
  return { v6: true, words };
}

const IP_CACHE = new Map<string, ParsedIp | null>();
const IP_CACHE_MAX = 8192;

/** parseIp with a bounded cache: a client address is parsed once, not once per stage. */
export function parseIpCached(text: string): ParsedIp | undefined {
  const hit = IP_CACHE.get(text);
  if (hit !== undefined) return hit ?? undefined;
  const p = parseIp(text);
  if (IP_CACHE.size >= IP_CACHE_MAX) IP_CACHE.clear();
  if (text.length <= 64) IP_CACHE.set(text, p ?? null);
  return p;
}

function v4ToInt(s: string): number {
  const p = s.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

function v6ToWords(s: string): number[] {
  let tail4: number | undefined;
  let body = s;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) > 0) {
    tail4 = v4ToInt(s.slice(lastColon + 1));
    body = s.slice(0, lastColon + 1) + '0:0';
  }
  const [headS, tailS] = body.includes('::') ? (body.split('::') as [string, string]) : [body, undefined];
  const head = headS ? headS.split(':') : [];
  const tail = tailS ? tailS.split(':') : [];
  const groups: number[] = [];
  for (const h of head) groups.push(parseInt(h, 16));
  if (tailS !== undefined) for (let i = head.length + tail.length; i < 8; i++) groups.push(0);
  for (const t of tail) groups.push(parseInt(t, 16));
  const w = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) w[i] = (((groups[2 * i] ?? 0) << 16) | (groups[2 * i + 1] ?? 0)) >>> 0;
  if (tail4 !== undefined) w[3] = tail4;
  return w;
}

export interface Cidr {
  readonly ip: ParsedIp;
  readonly prefix: number;
}

/** "192.0.2.0/24", "2001:db8::/32" or a bare address (full-length prefix). Host bits must be zero. */
export function parseCidr(text: string): Cidr | { error: string } | undefined {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addr);
  if (!ip) return undefined;
  const max = ip.v6 ? 128 : 32;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > (isIPv6(addr.replace(/^\[|\]$/g, '')) ? 128 : 32)) return { error: `prefix length "/${p}" is out of range (0-${max})` };
    prefix = Number(p);
    // ::ffff:a.b.c.d/120 style: an IPv4-mapped prefix counts in IPv4 bits.
    if (!ip.v6 && isIPv6(addr)) prefix = Math.max(0, prefix - 96);
  }
  const masked = maskWords(ip, prefix);
  if (masked.words.some((w, i) => w !== ip.words[i])) {
    return { error: `${text} has host bits set; the network is ${formatIp(masked)}/${prefix}` };
  }
  return { ip, prefix };
}

function maskFor(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

function maskWords(ip: ParsedIp, prefix: number): ParsedIp {
  const words = ip.words.map((w, i) => (w & maskFor(prefix - 32 * i)) >>> 0);
  return { v6: ip.v6, words };
}

export function formatIp(ip: ParsedIp): string {
  if (!ip.v6) {
    const a = ip.words[0] ?? 0;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const g: string[] = [];
  for (const w of ip.words) g.push((w >>> 16).toString(16), (w & 0xffff).toString(16));
  return g.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/^:::/, '::');
}

/**
 * A set of prefixes, matched by one hash lookup per distinct prefix length.
 * IPv4 keys are numbers; IPv6 keys are the four masked words joined (computed only for IPv6 clients).
 */
export class CidrSet {
  private readonly v4 = new Map<number, Set<number>>();
  /** IPv6 prefixes up to /64: first word → set of masked second words, per length. */
  private readonly v6short = new Map<number, Map<number, Set<number>>>();
  /** Longer IPv6 prefixes: the four masked words joined. */
  private readonly v6long = new Map<number, Set<string>>();
  private v4Lengths: number[] = [];
  private v6ShortLengths: number[] = [];
  private v6LongLengths: number[] = [];
  size = 0;

  add(c: Cidr): void {
    this.size++;
    if (!c.ip.v6) {
      let s = this.v4.get(c.prefix);
      if (!s) {
        this.v4.set(c.prefix, (s = new Set()));
        this.v4Lengths = [...this.v4.keys()].sort((a, b) => b - a);
      }
      s.add(((c.ip.words[0] as number) & maskFor(c.prefix)) >>> 0);
    } else if (c.prefix <= 64) {
      let m = this.v6short.get(c.prefix);
      if (!m) {
        this.v6short.set(c.prefix, (m = new Map()));
        this.v6ShortLengths = [...this.v6short.keys()].sort((a, b) => b - a);
      }
      const w = maskWords(c.ip, c.prefix).words;
      let s = m.get(w[0] as number);
      if (!s) m.set(w[0] as number, (s = new Set()));
      s.add(w[1] as number);
    } else {
      let s = this.v6long.get(c.prefix);
      if (!s) {
        this.v6long.set(c.prefix, (s = new Set()));
        this.v6LongLengths = [...this.v6long.keys()].sort((a, b) => b - a);
      }
      s.add(maskWords(c.ip, c.prefix).words.join(','));
    }
  }

  has(ip: ParsedIp): boolean {
    const w = ip.words;
    if (!ip.v6) {
      const a = w[0] as number;
      const lens = this.v4Lengths;
      for (let i = 0; i < lens.length; i++) {
        const len = lens[i] as number;
        if ((this.v4.get(len) as Set<number>).has((a & maskFor(len)) >>> 0)) return true;
      }
      return false;
    }
    const w0 = w[0] as number;
    const w1 = w[1] as number;
    const shorts = this.v6ShortLengths;
    for (let i = 0; i < shorts.length; i++) {
      const len = shorts[i] as number;
      const s = (this.v6short.get(len) as Map<number, Set<number>>).get((w0 & maskFor(len)) >>> 0);
      if (s !== undefined && s.has((w1 & maskFor(len - 32)) >>> 0)) return true;
    }
    const longs = this.v6LongLengths;
    for (let i = 0; i < longs.length; i++) {
      const len = longs[i] as number;
      if ((this.v6long.get(len) as Set<string>).has(maskWords(ip, len).words.join(','))) return true;
    }
    return false;
  }
}
