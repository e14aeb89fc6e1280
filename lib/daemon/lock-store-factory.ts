/**
 * Opens the lock store the `locks` section names (sqlite file, redis, or memory), with the section's allow list
 * layered on top: a key the configuration allows is never locked, whatever the store holds.
 */
import type { AllowEntry, LockEntry, LockResult, LockStore } from '../policy/lock-store.js';
import { AllowListMatcher } from '../policy/allow-list.js';
import { loadConfig } from './config-loader.js';
import type { LocksConfig } from './config-types.js';

export async function openLockStore(cfg: LocksConfig): Promise<LockStore> {
  let store: LockStore;
  switch (cfg.store) {
    case 'sqlite': {
      const { SqliteLockStore } = await import('../policy/lock-store-sqlite.js');
      store = new SqliteLockStore(cfg.path, { sweepIntervalMs: cfg.sweepInterval });
      break;
    }
    case 'memory': {
      // An in-memory SQLite database: same code path and semantics, gone at exit.
      const { SqliteLockStore } = await import('../policy/lock-store-sqlite.js');
      store = new SqliteLockStore(':memory:', { sweepIntervalMs: cfg.sweepInterval });
      break;
    }
    case 'redis': {
      const { RedisLockStore } = await import('../policy/lock-store-redis.js');
      store = new RedisLockStore({ url: cfg.redis.url, prefix: cfg.redis.prefix });
      break;
    }
  }
  return cfg.allow.length > 0 ? new ConfigAllowListStore(store, cfg.allow) : store;
}

/** Used by `sluice locks -c CONFIG`: the store exactly as the daemon would open it. */
export async function openConfiguredLockStore(configPath: string): Promise<LockStore> {
  const config = await loadConfig(configPath);
  return await openLockStore({ ...config.locks, sweepInterval: config.locks.sweepInterval });
}

/** Adds the configuration's allow list (read-only: `sluice locks disallow` cannot remove it) to a store. */
export class ConfigAllowListStore implements LockStore {
  private readonly matcher: AllowListMatcher;
  private readonly createdAt = Date.now();
  readonly isLockedNow?: (key: string) => LockEntry | undefined;
  constructor(
    private readonly inner: LockStore,
    private readonly keys: readonly string[],
  ) {
    this.matcher = new AllowListMatcher(keys);
    const now = inner.isLockedNow;
    if (now !== undefined) this.isLockedNow = (key) => (this.matcher.matches(key) ? undefined : now(key));
  }

  async lock(key: string, durationMs: number, reason: string, source: string): Promise<LockResult> {
    if (this.matcher.matches(key)) return { created: false, allowListed: true };
    return await this.inner.lock(key, durationMs, reason, source);
  }
  async isLocked(key: string): Promise<LockEntry | undefined> {
    if (this.matcher.matches(key)) return undefined;
    return await this.inner.isLocked(key);
  }
  unlock(key: string): Promise<boolean> {
    return this.inner.unlock(key);
  }
  list(): Promise<LockEntry[]> {
    return this.inner.list();
  }
  allow(key: string, note: string): Promise<void> {
    return this.inner.allow(key, note);
  }
  disallow(key: string): Promise<boolean> {
    return this.inner.disallow(key);
  }
  async listAllowed(): Promise<AllowEntry[]> {
    const stored = await this.inner.listAllowed();
    const have = new Set(stored.map((e) => e.key));
    return [...stored, ...this.keys.filter((k) => !have.has(k)).map((key) => ({ key, note: 'configuration (locks.allow)', createdAt: this.createdAt }))];
  }
  sweep(): Promise<number> {
    return this.inner.sweep();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
