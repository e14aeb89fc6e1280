/**
 * The policy engine's I/O from the configuration: the DNS resolver, SPF checker and DNS list provider, plus the
 * lock store and clock.
 */
import type { Logger } from '../core/logger.js';
import { DnsResolver } from '../policy/dns-resolver.js';
import { SpfChecker } from '../policy/spf-checker.js';
import type { DnsQuerier } from '../policy/dns-types.js';
import type { LockStore } from '../policy/lock-store.js';
import { SYSTEM_CLOCK, type DnsListProvider, type PolicyProviders, type SpfProvider } from '../policy/providers.js';
import type { DnsListConfig, SluiceConfig } from './config-types.js';
import { formatCidr, formatHostPort } from './config-units.js';
import { optionalModule } from './optional-module.js';

export interface BuiltProviders {
  readonly providers: PolicyProviders;
  close(): void;
}

/** The DNS list module's factory (owned by the dns engineer), as the daemon calls it. */
interface DnsblModule {
  createDnsListProvider(resolver: DnsQuerier, lists: readonly DnsListSpec[], logger?: Logger): DnsListProvider;
}

/** A DNS list as the provider wants it: plain strings. */
export interface DnsListSpec {
  readonly name: string;
  readonly zone: string;
  readonly type: 'ip' | 'domain';
  readonly listed: readonly string[];
  readonly errorCodes: readonly string[];
}

export function dnsListSpecs(lists: readonly DnsListConfig[]): DnsListSpec[] {
  return lists.map((l) => ({ name: l.name, zone: l.zone, type: l.type, listed: l.listed.map(formatCidr), errorCodes: l.errorCodes.map(formatCidr) }));
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
    const mod = await optionalModule<DnsblModule>('../policy/dnsbl.js');
    if (!mod) throw new Error('dns_lists: the DNS list provider is not part of this build');
    dnsLists = mod.createDnsListProvider(resolver, dnsListSpecs(config.dnsLists), logger.child({ component: 'dnsbl' }));
  }
  return {
    providers: { locks, clock: SYSTEM_CLOCK, ...(spf ? { spf } : {}), ...(dnsLists ? { dnsLists } : {}) },
    close: () => resolver?.close(),
  };
}
