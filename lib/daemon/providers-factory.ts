/**
 * The policy engine's I/O from the configuration: the DNS resolver, SPF checker and DNS list provider, plus the
 * lock store and clock.
 */
import type { Logger } from '../core/logger.js';
import { DnsResolver } from '../policy/dns-resolver.js';
import { SpfChecker } from '../policy/spf-checker.js';
import { DnsLists, type DnsListZoneOptions } from '../policy/dnsbl.js';
import type { LockStore } from '../policy/lock-store.js';
import { SYSTEM_CLOCK, type DnsListProvider, type PolicyProviders, type SpfProvider } from '../policy/providers.js';
import type { DnsListConfig, SluiceConfig } from './config-types.js';
import { formatHostPort } from './config-units.js';

export interface BuiltProviders {
  readonly providers: PolicyProviders;
  close(): void;
}

/** The dns_lists section as the DNS list provider wants it. */
export function dnsListZones(lists: readonly DnsListConfig[]): DnsListZoneOptions[] {
  return lists.map((l) => ({ name: l.name, zone: l.zone, kind: l.type, listed: l.listed, errors: l.errorCodes }));
}

export async function buildProviders(config: SluiceConfig, locks: LockStore, logger: Logger): Promise<BuiltProviders> {
  const needDns = config.spf.enabled || config.dnsLists.length > 0;
  const resolver = needDns
    ? new DnsResolver({
        servers: config.dns.servers.map(formatHostPort),
        timeoutMs: config.dns.timeout,
        retries: config.dns.retries,
        cacheEntries: config.dns.cacheSize,
        logger: logger.child({ component: 'dns' }),
      })
    : undefined;
  let spf: SpfProvider | undefined;
  if (config.spf.enabled && resolver) {
    spf = new SpfChecker({ resolver, hostname: config.hostname, logger: logger.child({ component: 'spf' }) });
  }
  let dnsLists: DnsListProvider | undefined;
  if (config.dnsLists.length > 0 && resolver) {
    dnsLists = new DnsLists({ resolver, zones: dnsListZones(config.dnsLists), logger: logger.child({ component: 'dnsbl' }) });
  }
  return {
    providers: { locks, clock: SYSTEM_CLOCK, ...(spf ? { spf } : {}), ...(dnsLists ? { dnsLists } : {}) },
    close: () => resolver?.close(),
  };
}
