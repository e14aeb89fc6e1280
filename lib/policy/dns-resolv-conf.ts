/**
 * The system's DNS servers, from /etc/resolv.conf ("nameserver" lines; resolv.conf(5)). Only the servers are
 * taken: search domains and ndots do not apply, because the engine only ever asks fully qualified names.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

export const RESOLV_CONF = '/etc/resolv.conf';

/** At most three servers, like the C library (MAXNS). */
const MAXNS = 3;

export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (!m || m[1] === undefined) continue;
    const addr = m[1].replace(/%.*$/, ''); // drop an IPv6 zone id
    if (isIP(addr) !== 0 && out.length < MAXNS) out.push(addr);
  }
  return out;
}

/** Servers from the file, or 127.0.0.1 when it names none (what the C library does too). */
export function systemServers(path = RESOLV_CONF): string[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    /* no file: fall through to the default */
  }
  const servers = parseResolvConf(text);
  return servers.length > 0 ? servers : ['127.0.0.1'];
}
