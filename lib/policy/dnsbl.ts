/**
 * DNS lists for the policy engine: DNSBL/DNSWL on the client address (IPv4 reversed octets, IPv6 32 reversed
 * nibbles, RFC 5782) and RHSBL on a domain (the sender's). Implements DnsListProvider.
 *
 * Unlike smtp-gated (any answer = listed, errors = not listed, silently), an answer means "listed" only when
 * it is one of the zone's configured codes; codes that mean "the list refused you" (Spamhaus' 127.255.255.x
 * for queries through public resolvers) are an error, not a listing; answers outside 127.0.0.0/8 are ignored
 * and logged (a resolver that rewrites NXDOMAIN, or a dead list whose domain was re-registered); DNS
 * failures are reported as errors for the rules to decide (fail-open or tempfail). The TXT reason is only
 * fetched when listed.
 */
import type { Logger } from '../core/logger.js';
import { NULL_LOGGER } from '../core/logger.js';
import type { DnsListOutcome, DnsListProvider } from './providers.js';
import { canonicalName, nameProblem, reverseAddress } from './dns-name.js';
import { DnsError, type DnsQuerier } from './dns-types.js';
import { CodeSet, LOOPBACK_NET } from './dnsbl-codes.js';

/** One configured list, as the daemon maps it from YAML. */
export interface DnsListZoneOptions {
  /** The name rules use (`dnsbl.spamhaus`). */
  readonly name: string;
  /** The DNS zone queried, e.g. "zen.spamhaus.org". */
  readonly zone: string;
  /** `ip`: address list (DNSBL/DNSWL); `domain`: RHSBL. */
  readonly kind: 'ip' | 'domain';
  /** Answers that mean "listed": IPs, ranges "a-b", CIDRs. Default: 127.0.0.0/8 (less the error codes). */
  readonly listed?: readonly string[];
  /** Answers that mean "the list refused the query". Default: 127.255.255.0/24. */
  readonly errors?: readonly string[];
  /** Fetch the TXT reason when listed (default true). */
  readonly reason?: boolean;
}

export interface DnsListsOptions {
  readonly resolver: DnsQuerier;
  readonly zones: readonly DnsListZoneOptions[];
  readonly logger?: Logger;
}

export const DEFAULT_LIST_ERRORS = ['127.255.255.0/24'] as const;
/** Longest TXT reason passed on (bytes); the rest is cut. */
const MAX_REASON = 512;

interface Zone {
  readonly options: DnsListZoneOptions;
  readonly zone: string;
  readonly listed: CodeSet;
  readonly errors: CodeSet;
}

/** Problems with a zone's options, for the config loader's diagnostics; empty when fine. */
export function dnsListZoneProblems(z: DnsListZoneOptions): string[] {
  const out: string[] = [];
  if (!/^[a-z0-9_][a-z0-9_-]*$/i.test(z.name)) out.push(`list name ${JSON.stringify(z.name)} must be a word (letters, digits, - and _)`);
  if (nameProblem(z.zone) !== undefined || !z.zone.includes('.')) out.push(`zone ${JSON.stringify(z.zone)} is not a DNS name`);
  if (z.kind !== 'ip' && z.kind !== 'domain') out.push(`kind must be "ip" or "domain"`);
  for (const [key, list] of [['listed', z.listed], ['errors', z.errors]] as const) {
    try {
      CodeSet.parse(list ?? [], key);
    } catch (e) {
      out.push((e as Error).message);
    }
  }
  return out;
}

function cleanReason(txt: readonly Buffer[]): string {
  const s = Buffer.concat([...txt]).subarray(0, MAX_REASON).toString('utf8');
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
}

export class DnsLists implements DnsListProvider {
  readonly zones: ReadonlySet<string>;
  private readonly byName = new Map<string, Zone>();
  private readonly dns: DnsQuerier;
  private readonly logger: Logger;

  constructor(options: DnsListsOptions) {
    this.dns = options.resolver;
    this.logger = options.logger ?? NULL_LOGGER;
    for (const z of options.zones) {
      const problems = dnsListZoneProblems(z);
      if (problems.length > 0) throw new Error(`DNS list ${JSON.stringify(z.name)}: ${problems.join('; ')}`);
      if (this.byName.has(z.name)) throw new Error(`DNS list ${JSON.stringify(z.name)} configured twice`);
      this.byName.set(z.name, {
        options: z,
        zone: canonicalName(z.zone),
        listed: CodeSet.parse(z.listed && z.listed.length > 0 ? z.listed : ['127.0.0.0/8'], 'listed'),
        errors: CodeSet.parse(z.errors ?? DEFAULT_LIST_ERRORS, 'errors'),
      });
    }
    this.zones = new Set(this.byName.keys());
  }

  async lookupAddress(zone: string, ip: string): Promise<DnsListOutcome> {
    const z = this.byName.get(zone);
    if (z === undefined) return { zone, listed: false, codes: [], error: 'unknown list' };
    if (z.options.kind !== 'ip') return { zone, listed: false, codes: [], error: 'not an address list' };
    const rev = reverseAddress(ip);
    if (rev === undefined) return { zone, listed: false, codes: [], error: 'not an IP address' };
    return await this.lookup(z, `${rev}.${z.zone}`, ip);
  }

  async lookupDomain(zone: string, domain: string): Promise<DnsListOutcome> {
    const z = this.byName.get(zone);
    if (z === undefined) return { zone, listed: false, codes: [], error: 'unknown list' };
    if (z.options.kind !== 'domain') return { zone, listed: false, codes: [], error: 'not a domain list' };
    const d = canonicalName(domain.trim());
    const name = `${d}.${z.zone}`;
    if (d === '' || nameProblem(name) !== undefined) return { zone, listed: false, codes: [], error: 'not a valid domain' };
    return await this.lookup(z, name, d);
  }

  private async lookup(z: Zone, qname: string, subject: string): Promise<DnsListOutcome> {
    const started = performance.now();
    const name = z.options.name;
    let outcome: DnsListOutcome;
    try {
      const ans = await this.dns.query(qname, 'A');
      const codes: string[] = [];
      const refused: string[] = [];
      for (const a of ans.records) {
        if (!LOOPBACK_NET.has(a)) {
          this.logger.warn({ dnsl: { list: name, query: qname, answer: a } }, 'DNS list answer outside 127.0.0.0/8 ignored');
        } else if (z.errors.has(a)) refused.push(a);
        else if (z.listed.has(a)) codes.push(a);
      }
      if (refused.length > 0) {
        outcome = { zone: name, listed: false, codes: [], error: `list refused the query (${refused.join(', ')})` };
      } else if (codes.length > 0) {
        const reason = z.options.reason === false ? undefined : await this.reason(qname);
        outcome = { zone: name, listed: true, codes, ...(reason !== undefined && reason !== '' ? { reason } : {}) };
      } else {
        outcome = { zone: name, listed: false, codes: [] };
      }
    } catch (e) {
      const code = e instanceof DnsError ? e.code : e instanceof Error ? e.message : String(e);
      outcome = { zone: name, listed: false, codes: [], error: `DNS ${code}` };
    }
    const ms = Math.round((performance.now() - started) * 100) / 100;
    if (outcome.error !== undefined) {
      this.logger.warn({ dnsl: { list: name, subject, query: qname, error: outcome.error, ms } }, 'DNS list lookup failed');
    } else if (this.logger.isLevelEnabled === undefined || this.logger.isLevelEnabled('debug')) {
      this.logger.debug({ dnsl: { list: name, subject, query: qname, listed: outcome.listed, codes: outcome.codes, ms } }, 'DNS list lookup');
    }
    return outcome;
  }

  private async reason(qname: string): Promise<string | undefined> {
    try {
      const t = await this.dns.query(qname, 'TXT');
      const first = t.records[0];
      return first === undefined ? undefined : cleanReason(first);
    } catch {
      return undefined;
    }
  }
}
