/**
 * Parsers for the value syntaxes of the configuration file: durations ("30s", "5m"), sizes ("10MB"),
 * listen addresses ("127.0.0.1:10025", "[::1]:10025", "unix:/run/sluice.sock", milter-style "inet:10025@127.0.0.1"),
 * host:port endpoints and CIDR prefixes. Each returns the value or a string saying what is wrong.
 */
import { isIP } from 'node:net';

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** Longest duration we accept anywhere (a year): keeps timers within setTimeout's 2^31 ms where it matters. */
export const MAX_DURATION_MS = 365 * 86_400_000;

/** "30s", "5m", "1h30m", "250ms", "0" → milliseconds. */
export function parseDuration(text: string): number | string {
  const t = text.trim();
  if (t === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS];
    pos = re.lastIndex;
  }
  if (pos === 0 || pos !== t.length) return `"${text}" is not a duration; write a number with a unit: ms, s, m, h or d (e.g. 30s, 5m, 1h30m)`;
  if (total > MAX_DURATION_MS) return `"${text}" is longer than the maximum of 365d`;
  return Math.round(total);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};

/** "10MB", "512k", "1048576" → bytes (binary units: 1 KB = 1024 bytes). */
export function parseSize(text: string): number | string {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = m ? SIZE_UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || unit === undefined) return `"${text}" is not a size; write a number of bytes or use a unit: KB, MB, GB (e.g. 10MB)`;
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) return `"${text}" is too large`;
  return bytes;
}

export type ListenAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Renders a listen address the way the config writes it. */
export function formatListen(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : formatHostPort(a);
}

export function formatHostPort(a: HostPort): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function parsePort(text: string, allowZero: boolean): number | string {
  if (!/^\d{1,5}$/.test(text)) return `"${text}" is not a port number`;
  const n = Number(text);
  if (n > 65535 || (n === 0 && !allowZero)) return `port ${n} is out of range (${allowZero ? 0 : 1}..65535)`;
  return n;
}

const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62}))*\.?$/;

function checkHost(host: string): string | undefined {
  if (isIP(host) !== 0 || HOSTNAME.test(host)) return undefined;
  return `"${host}" is neither an IP address nor a host name`;
}

/** "host:port" or "[v6]:port". `allowZeroPort` lets a listener ask for an ephemeral port (tests). */
export function parseHostPort(text: string, allowZeroPort = false): HostPort | string {
  const t = text.trim();
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(t);
  if (v6) {
    host = v6[1] as string;
    port = v6[2] as string;
    if (isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  } else {
    const idx = t.lastIndexOf(':');
    if (idx <= 0) return `"${text}" is not host:port (e.g. 127.0.0.1:25 or [::1]:25)`;
    host = t.slice(0, idx);
    port = t.slice(idx + 1);
    if (host.includes(':')) return `"${text}": write an IPv6 address in brackets, e.g. [::1]:25`;
  }
  const bad = checkHost(host);
  if (bad) return bad;
  const p = parsePort(port, allowZeroPort);
  if (typeof p === 'string') return p;
  return { host, port: p };
}

/**
 * A listen address: "127.0.0.1:10025", "[::1]:10025", "unix:/run/sluice/milter.sock" (or an absolute path),
 * and milter style "inet:10025@127.0.0.1" / "inet6:10025@::1". Relative unix paths are left relative (the
 * loader resolves them against the config file's directory).
 */
export function parseListen(text: string): ListenAddress | string {
  const t = text.trim();
  if (t.startsWith('unix:') || t.startsWith('local:')) {
    const path = t.slice(t.indexOf(':') + 1);
    if (path === '') return `"${text}" names no socket path`;
    if (Buffer.byteLength(path) > 100) return `unix socket path "${path}" is longer than 100 bytes (the kernel limit is 108)`;
    return { kind: 'unix', path };
  }
  if (t.startsWith('/')) return parseListen(`unix:${t}`);
  const inet = /^inet6?:(\d+)@(.+)$/.exec(t);
  if (inet) {
    const host = (inet[2] as string).replace(/^\[(.*)\]$/, '$1');
    const r = parseHostPort(isIP(host) === 6 ? `[${host}]:${inet[1]}` : `${host}:${inet[1]}`, true);
    return typeof r === 'string' ? r : { kind: 'tcp', ...r };
  }
  const r = parseHostPort(t, true);
  return typeof r === 'string' ? `${r}; a listen address is host:port, [v6]:port or unix:/path` : { kind: 'tcp', ...r };
}

export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 4 | 6;
}

/** "192.0.2.0/24", "2001:db8::/32", or a bare address (a /32 or /128). */
export function parseCidr(text: string): Cidr | string {
  const t = text.trim();
  const slash = t.indexOf('/');
  const address = slash >= 0 ? t.slice(0, slash) : t;
  const family = isIP(address);
  if (family === 0) return `"${address}" is not an IP address`;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `"/${p}" is not a prefix length for IPv${family} (0..${max})`;
    prefix = Number(p);
  }
  return { address, prefix, family: family as 4 | 6 };
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}
