/**
 * A bounded cache of DNS answers that respects their TTLs. Positive and negative answers (NXDOMAIN/NODATA,
 * RFC 2308) are kept alike; failures are never cached. Least recently used entries go first when full.
 */
export interface DnsCacheOptions {
  /** Most entries kept (default 10,000). */
  readonly maxEntries?: number;
  /** Clock in milliseconds (tests inject one). */
  readonly now?: () => number;
}

interface Entry<V> {
  readonly value: V;
  readonly expires: number;
}

export class DnsCache<V> {
  private readonly map = new Map<string, Entry<V>>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: DnsCacheOptions = {}) {
    this.maxEntries = Math.max(1, options.maxEntries ?? 10_000);
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.map.size;
  }

  /** The value and the seconds it has left, or undefined when absent or expired. */
  get(key: string): { value: V; ttlLeft: number } | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    const left = e.expires - this.now();
    if (left <= 0) {
      this.map.delete(key);
      return undefined;
    }
    // refresh recency (Map keeps insertion order: the first key is the least recently used)
    this.map.delete(key);
    this.map.set(key, e);
    return { value: e.value, ttlLeft: Math.ceil(left / 1000) };
  }

  set(key: string, value: V, ttlSeconds: number): void {
    if (!(ttlSeconds > 0)) return;
    this.map.delete(key);
    this.map.set(key, { value, expires: this.now() + ttlSeconds * 1000 });
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) break;
      this.map.delete(oldest.value);
    }
  }

  clear(): void {
    this.map.clear();
  }
}
