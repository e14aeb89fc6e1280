/**
 * The DNS stub resolver the policy engine uses (SPF, DNS lists). Built on dns-packet rather than node:dns:
 * node:dns (c-ares) has no cache, refuses names SPF macros can produce, and hides TTLs and empty TXT strings.
 *
 * - servers: configured, or the system's from /etc/resolv.conf; tried in turn on timeout/SERVFAIL/REFUSED;
 * - per-attempt timeout and a retry count; TCP when the UDP answer is truncated (TC bit);
 * - a bounded LRU cache that keeps answers for their TTL; NXDOMAIN/NODATA for the SOA's negative TTL
 *   (RFC 2308 §5: min(SOA TTL, SOA MINIMUM)); negative answers without SOA and failures are not cached;
 * - identical questions in flight share one query; at most `concurrency` queries on the wire at once;
 * - random query ids (crypto) and a fresh UDP socket (random source port) per query; answers must match
 *   id, server and question.
 */
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import type { Logger } from '../core/logger.js';
import { NULL_LOGGER } from '../core/logger.js';
import { DnsCache } from './dns-cache.js';
import { canonicalName, nameProblem } from './dns-name.js';
import { systemServers } from './dns-resolv-conf.js';
import { exchangeTcp, exchangeUdp, parseServer, type DnsMessage, type DnsRecordRaw, type DnsServer } from './dns-transport.js';
import {
  DNS_ERROR,
  DnsError,
  type DnsAnswer,
  type DnsDataByType,
  type DnsErrorCode,
  type DnsQuerier,
  type DnsType,
} from './dns-types.js';

export interface DnsResolverOptions {
  /** "ip", "ip:port" or "[ipv6]:port"; default: the nameservers in /etc/resolv.conf. */
  readonly servers?: readonly string[];
  /** Per attempt, in ms (default 2000). */
  readonly timeoutMs?: number;
  /** Further attempts after the first (default 2), rotating through the servers. */
  readonly retries?: number;
  /** Cache size in entries (default 10,000; 0 turns the cache off). */
  readonly cacheEntries?: number;
  /** Upper bound for positive TTLs in seconds (default 86,400). */
  readonly maxTtl?: number;
  /** Upper bound for negative TTLs in seconds (default 10,800, RFC 2308 §5). */
  readonly maxNegativeTtl?: number;
  /** Most queries on the wire at once (default 64); the rest wait in turn. */
  readonly concurrency?: number;
  /** Most queries waiting for a slot (default 10,000); past it a query fails at once with EQUEUEFULL. */
  readonly maxQueued?: number;
  /** Advertise a 1232-byte UDP payload with EDNS0 (default true); fallback without on FORMERR. */
  readonly edns?: boolean;
  readonly logger?: Logger;
  /** Clock in ms, for the cache (tests inject one). */
  readonly now?: () => number;
}

export interface DnsResolverStats {
  queries: number;
  cacheHits: number;
  shared: number;
  wireQueries: number;
  tcpQueries: number;
  failures: number;
}

/** How many CNAMEs a lookup follows before giving up (RFC 1034 §3.6.2 asks for a bound). */
const MAX_CNAME_CHAIN = 8;
const EDNS_UDP_SIZE = 1232;

type CachedValue = { rcode: 'NOERROR' | 'NXDOMAIN'; records: readonly unknown[]; name: string };

export class DnsResolver implements DnsQuerier {
  readonly servers: readonly DnsServer[];
  readonly stats: DnsResolverStats = { queries: 0, cacheHits: 0, shared: 0, wireQueries: 0, tcpQueries: 0, failures: 0 };
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly concurrency: number;
  private readonly maxQueued: number;
  private readonly edns: boolean;
  private readonly logger: Logger;
  private readonly cache: DnsCache<CachedValue> | undefined;
  private readonly inflight = new Map<string, Promise<DnsAnswer>>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private nextServer = 0;
  private closed = false;

  constructor(options: DnsResolverOptions = {}) {
    const specs = options.servers && options.servers.length > 0 ? options.servers : systemServers();
    this.servers = specs.map(parseServer);
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 2000);
    this.retries = Math.max(0, options.retries ?? 2);
    this.maxTtl = options.maxTtl ?? 86_400;
    this.maxNegativeTtl = options.maxNegativeTtl ?? 10_800;
    this.concurrency = Math.max(1, options.concurrency ?? 64);
    this.maxQueued = Math.max(0, options.maxQueued ?? 10_000);
    this.edns = options.edns ?? true;
    this.logger = options.logger ?? NULL_LOGGER;
    const entries = options.cacheEntries ?? 10_000;
    this.cache = entries > 0 ? new DnsCache<CachedValue>({ maxEntries: entries, ...(options.now ? { now: options.now } : {}) }) : undefined;
  }

  /** Queries currently on the wire (for tests and metrics). */
  get activeQueries(): number {
    return this.active;
  }

  /** Cancels nothing already on the wire, but refuses new queries and drops the cache. */
  close(): void {
    this.closed = true;
    this.cache?.clear();
    for (const w of this.waiting.splice(0)) w();
  }

  query<T extends DnsType>(name: string, type: T): Promise<DnsAnswer<T>> {
    this.stats.queries++;
    const problem = nameProblem(name);
    if (problem !== undefined) {
      this.logLookup(name, type, 0, 'EBADNAME', false);
      return Promise.reject(new DnsError(DNS_ERROR.EBADNAME, name, type));
    }
    const key = type + ' ' + canonicalName(name);
    const hit = this.cache?.get(key);
    if (hit !== undefined) {
      this.stats.cacheHits++;
      this.logLookup(name, type, 0, hit.value.rcode, true, hit.value.records.length);
      return Promise.resolve({
        name: hit.value.name,
        type,
        rcode: hit.value.rcode,
        records: hit.value.records as readonly DnsDataByType[T][],
        ttl: hit.ttlLeft,
        cached: true,
      });
    }
    const pending = this.inflight.get(key);
    if (pending !== undefined) {
      this.stats.shared++;
      return pending as Promise<DnsAnswer<T>>;
    }
    const started = performance.now();
    const p = this.resolveUncached(name, type, key, 0).then(
      (a) => {
        this.inflight.delete(key);
        this.logLookup(name, type, performance.now() - started, a.rcode, false, a.records.length);
        return a;
      },
      (e: unknown) => {
        this.inflight.delete(key);
        this.stats.failures++;
        this.logLookup(name, type, performance.now() - started, e instanceof DnsError ? e.code : String(e), false);
        throw e;
      },
    );
    this.inflight.set(key, p as Promise<DnsAnswer>);
    return p;
  }

  private logLookup(name: string, type: string, ms: number, result: string, cached: boolean, count?: number): void {
    if (this.logger.isLevelEnabled !== undefined && !this.logger.isLevelEnabled('debug')) return;
    this.logger.debug({ dns: { name, type, result, cached, records: count, ms: Math.round(ms * 100) / 100 } }, 'dns lookup');
  }

  private async resolveUncached<T extends DnsType>(name: string, type: T, key: string, depth: number): Promise<DnsAnswer<T>> {
    const packet = await this.withSlot(() => this.ask(name, type), name, type);
    const wanted = canonicalName(name);
    const answers = packet.answers ?? [];
    // follow the CNAME chain inside the answer
    let current = wanted;
    let ttl = Number.POSITIVE_INFINITY;
    if (type !== 'CNAME') {
      for (let i = 0; i < MAX_CNAME_CHAIN; i++) {
        const c = answers.find((a) => a.type === 'CNAME' && canonicalName(a.name) === current);
        if (c === undefined) break;
        current = canonicalName(String(c.data));
        ttl = Math.min(ttl, c.ttl ?? 0);
      }
    }
    const records: unknown[] = [];
    for (const a of answers) {
      if (a.type !== type || canonicalName(a.name) !== current) continue;
      const rec = convert(a);
      if (rec === undefined) continue;
      records.push(rec);
      ttl = Math.min(ttl, a.ttl ?? 0);
    }
    const rcode = packet.rcode === 'NXDOMAIN' ? 'NXDOMAIN' : 'NOERROR';
    if (records.length === 0 && current !== wanted && rcode === 'NOERROR') {
      // the server gave us only the alias: ask for the target ourselves
      if (depth >= MAX_CNAME_CHAIN) throw new DnsError(DNS_ERROR.EBADRESP, name, type);
      const target = await this.query(current, type).catch((e: unknown) => {
        throw e instanceof DnsError ? new DnsError(e.code, name, type) : e;
      });
      return { ...target, name: wanted, cached: false };
    }
    if (records.length === 0) ttl = negativeTtl(packet);
    ttl = Math.min(Number.isFinite(ttl) ? ttl : 0, records.length === 0 ? this.maxNegativeTtl : this.maxTtl);
    const value: CachedValue = { rcode, records, name: wanted };
    this.cache?.set(key, value, ttl);
    return { name: wanted, type, rcode, records: records as DnsDataByType[T][], ttl, cached: false };
  }

  private async withSlot<R>(fn: () => Promise<R>, name: string, type: string): Promise<R> {
    while (this.active >= this.concurrency) {
      if (this.closed) break;
      if (this.waiting.length >= this.maxQueued) throw new DnsError(DNS_ERROR.EQUEUEFULL, name, type);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    if (this.closed) throw new DnsError(DNS_ERROR.ECANCELLED, '', '');
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  /** Asks the servers in turn until one gives a usable answer or the attempts run out. */
  private async ask(name: string, type: DnsType): Promise<DnsMessage> {
    let last: DnsErrorCode = DNS_ERROR.ETIMEOUT;
    const start = this.nextServer++ % this.servers.length;
    let edns = this.edns;
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      const server = this.servers[(start + attempt) % this.servers.length];
      if (server === undefined) break;
      try {
        let p = await this.exchange(server, name, type, edns);
        if (p.rcode === 'FORMERR' && edns) {
          edns = false; // an old server that does not speak EDNS0
          p = await this.exchange(server, name, type, edns);
        }
        switch (p.rcode) {
          case 'NOERROR':
          case 'NXDOMAIN':
            return p;
          case 'SERVFAIL':
            last = DNS_ERROR.ESERVFAIL;
            break;
          case 'FORMERR':
            last = DNS_ERROR.EFORMERR;
            break;
          default:
            last = DNS_ERROR.EREFUSED;
        }
      } catch (e) {
        if (!(e instanceof DnsError)) throw e;
        last = e.code;
      }
      if (this.closed) break;
    }
    throw new DnsError(last, name, type);
  }

  private async exchange(server: DnsServer, name: string, type: DnsType, edns: boolean): Promise<DnsMessage> {
    const id = randomInt(0, 65_536);
    const qname = name.endsWith('.') ? name.slice(0, -1) : name;
    const query = dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type, name: qname, class: 'IN' }],
      ...(edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE } as dnsPacket.Answer] } : {}),
    });
    const ex = { server, query, id, name: qname, type, timeoutMs: this.timeoutMs };
    this.stats.wireQueries++;
    const p = await exchangeUdp(ex);
    if (p.flag_tc !== true) return p;
    this.stats.tcpQueries++;
    return await exchangeTcp(ex);
  }
}

function convert(a: DnsRecordRaw): unknown {
  switch (a.type) {
    case 'A':
    case 'AAAA':
    case 'PTR':
    case 'CNAME':
    case 'NS':
      return canonicalOrSelf(a.type, String(a.data));
    case 'TXT': {
      const d = a.data as unknown;
      if (Array.isArray(d)) return d.map((x: unknown) => (Buffer.isBuffer(x) ? x : Buffer.from(String(x))));
      return Buffer.isBuffer(d) ? [d] : [Buffer.from(String(d))];
    }
    case 'MX': {
      const d = a.data as { preference?: number; exchange?: string };
      return { preference: d.preference ?? 0, exchange: canonicalName(d.exchange ?? '') };
    }
    case 'SOA': {
      const d = a.data as { mname?: string; minimum?: number };
      return { mname: d.mname ?? '', minimum: d.minimum ?? 0 };
    }
    default:
      return undefined;
  }
}

function canonicalOrSelf(type: string, v: string): string {
  return type === 'A' || type === 'AAAA' ? v : v.endsWith('.') ? v.slice(0, -1) : v;
}

/** RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM); with no SOA the answer is not cached. */
function negativeTtl(p: DnsMessage): number {
  for (const a of p.authorities ?? []) {
    if (a.type === 'SOA') {
      const min = (a.data as { minimum?: number }).minimum ?? 0;
      return Math.min(a.ttl ?? 0, min);
    }
  }
  return 0;
}
