/**
 * Presents our resolver to mailauth's SPF code in the shape it expects from node:dns `resolve(name, type)`:
 * arrays of records, and errors whose `code` is ENOTFOUND (NXDOMAIN), ENODATA (no record of the type),
 * ETIMEOUT, ESERVFAIL, EREFUSED... TXT records are handed over as arrays of latin-1 strings so that every
 * byte of the record reaches the SPF parser unchanged (it rejects non-ASCII records as RFC 7208 §3.1 wants).
 */
import { DNS_ERROR, DnsError, DNS_TYPES, type DnsQuerier, type DnsType } from './dns-types.js';

export type NodeStyleResolve = (name: string, type: string) => Promise<unknown[]>;

/** RFC 7208 §7.3: a name over 253 characters loses labels from the left until it fits. */
export function truncateSpfName(name: string): string {
  let n = name.endsWith('.') ? name.slice(0, -1) : name;
  while (n.length > 253) {
    const dot = n.indexOf('.');
    if (dot < 0) break;
    n = n.slice(dot + 1);
  }
  return n;
}

function fail(code: string, name: string, type: string): never {
  throw new DnsError(code as DnsError['code'], name, type);
}

export function nodeStyleResolver(dns: DnsQuerier, onQuery?: (name: string, type: string) => void): NodeStyleResolve {
  return async (rawName: string, rawType: string): Promise<unknown[]> => {
    const type = rawType.toUpperCase();
    const name = truncateSpfName(rawName);
    if (!(DNS_TYPES as readonly string[]).includes(type)) fail(DNS_ERROR.EREFUSED, name, type);
    onQuery?.(name, type);
    const ans = await dns.query(name, type as DnsType);
    if (ans.rcode === 'NXDOMAIN') fail(DNS_ERROR.ENOTFOUND, name, type);
    if (ans.records.length === 0) fail(DNS_ERROR.ENODATA, name, type);
    switch (type) {
      case 'TXT':
        return (ans.records as readonly (readonly Buffer[])[]).map((r) => r.map((b) => b.toString('latin1')));
      case 'MX':
        return (ans.records as readonly { preference: number; exchange: string }[]).map((r) => ({
          priority: r.preference,
          exchange: r.exchange,
        }));
      default:
        return [...ans.records];
    }
  };
}
