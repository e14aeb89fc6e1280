/**
 * The I/O the policy engine needs, injected so that the daemon and `sluice policy test` run the same evaluator:
 * the daemon passes real DNS, lock store and clock; `policy test` passes facts from the scenario.
 */
import type { LockStore } from './lock-store.js';

export type SpfResultCode = 'none' | 'neutral' | 'pass' | 'fail' | 'softfail' | 'temperror' | 'permerror';
export const SPF_RESULTS: readonly SpfResultCode[] = ['none', 'neutral', 'pass', 'fail', 'softfail', 'temperror', 'permerror'];

export interface SpfQuery {
  readonly ip: string;
  readonly helo?: string;
  /** Reverse path; "" for the null sender, in which case the HELO identity is checked (RFC 7208 §2.4). */
  readonly sender: string;
}

export interface SpfOutcome {
  readonly result: SpfResultCode;
  /** Which identity was checked. */
  readonly identity: 'mailfrom' | 'helo';
  readonly domain?: string;
  /** The `exp=` explanation for fail, or a short text of why (for logs). */
  readonly explanation?: string;
  /** DNS lookups the check made (RFC 7208 §4.6.4 caps at 10). */
  readonly lookups?: number;
}

export interface SpfProvider {
  check(query: SpfQuery): Promise<SpfOutcome>;
}

export interface DnsListOutcome {
  /** The zone's configured name (as the rules refer to it). */
  readonly zone: string;
  readonly listed: boolean;
  /** The A records returned that mean "listed", e.g. ["127.0.0.2"]. */
  readonly codes: readonly string[];
  /** TXT reason, fetched only when listed. */
  readonly reason?: string;
  /** Set when the lookup failed (timeout, SERVFAIL, or the list refused us with an error code). */
  readonly error?: string;
}

export interface DnsListProvider {
  /** DNSBL/DNSWL lookup of an IPv4 or IPv6 address in the zone configured under `zone`. */
  lookupAddress(zone: string, ip: string): Promise<DnsListOutcome>;
  /** RHSBL lookup of a domain (e.g. the sender's) in the zone configured under `zone`. */
  lookupDomain(zone: string, domain: string): Promise<DnsListOutcome>;
  /** The zone names configured, so the rule checker can reject unknown ones at compile time. */
  readonly zones: ReadonlySet<string>;
}

export interface Clock {
  now(): number;
}

export const SYSTEM_CLOCK: Clock = { now: () => Date.now() };

export interface PolicyProviders {
  readonly locks: LockStore;
  readonly clock: Clock;
  readonly spf?: SpfProvider;
  readonly dnsLists?: DnsListProvider;
}
