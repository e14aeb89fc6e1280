/**
 * Lock store shared by several sluice nodes: Redis keys with a TTL, so a client locked on node A is refused on
 * node B, and expiry is Redis's job (nothing to sweep). Creation is atomic (a Lua script), so exactly one node sees
 * `created: true` for a new lock and runs the action hook.
 */
import { Redis } from 'ioredis';
import type { AllowEntry, LockEntry, LockResult, LockStore } from './lock-store.js';
import { AllowListMatcher, lockKeyProblem } from './allow-list.js';

export interface RedisLockStoreOptions {
  readonly url: string;
  /** Prefix of every key sluice writes. Default "sluice:". */
  readonly prefix?: string;
  readonly connectTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
}

interface StoredLock {
  reason: string;
  source: string;
  createdAt: number;
}

// KEYS[1] lock key. ARGV[1] JSON value, ARGV[2] duration ms. Returns {created, value, pttl}.
const LOCK_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, ARGV[1], tonumber(ARGV[2])}
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  pttl = tonumber(ARGV[2])
end
return {0, cur, pttl}`;

export class RedisLockStore implements LockStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private allowCache: { matcher: AllowListMatcher; at: number } | undefined;

  constructor(opts: RedisLockStoreOptions) {
    this.prefix = opts.prefix ?? 'sluice:';
    this.redis = new Redis(opts.url, {
      lazyConnect: false,
      connectTimeout: opts.connectTimeoutMs ?? 5000,
      commandTimeout: opts.commandTimeoutMs ?? 2000,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
    });
    // errors surface on the commands; the connection-level event must not crash the process
    this.redis.on('error', () => undefined);
    this.redis.defineCommand('sluiceLock', { numberOfKeys: 1, lua: LOCK_SCRIPT });
  }

  private lockKey(key: string): string {
    return `${this.prefix}lock:${key}`;
  }

  private get allowKey(): string {
    return `${this.prefix}allow`;
  }

  private async allowMatcher(): Promise<AllowListMatcher> {
    const now = Date.now();
    // other nodes may change the allow list; re-read at most once a second
    if (!this.allowCache || now - this.allowCache.at > 1000) {
      const keys = await this.redis.hkeys(this.allowKey);
      this.allowCache = { matcher: new AllowListMatcher(keys), at: now };
    }
    return this.allowCache.matcher;
  }

  async lock(key: string, durationMs: number, reason: string, source: string): Promise<LockResult> {
    const problem = lockKeyProblem(key);
    if (problem) throw new RangeError(problem);
    if (!(durationMs > 0)) throw new RangeError(`lock duration must be positive, got ${durationMs}`);
    if ((await this.allowMatcher()).matches(key)) return { created: false, allowListed: true };
    const now = Date.now();
    const value: StoredLock = { reason, source, createdAt: now };
    const run = (this.redis as unknown as { sluiceLock(k: string, v: string, d: string): Promise<[number, string, number]> }).sluiceLock;
    const [created, stored, pttl] = await run.call(this.redis, this.lockKey(key), JSON.stringify(value), String(Math.ceil(durationMs)));
    const entry = this.toEntry(key, stored, pttl, now);
    return entry ? { created: created === 1, allowListed: false, entry } : { created: created === 1, allowListed: false };
  }

  private toEntry(key: string, json: string | null, pttl: number, now: number): LockEntry | undefined {
    if (json === null || pttl <= 0) return undefined;
    try {
      const v = JSON.parse(json) as StoredLock;
      return { key, reason: String(v.reason), source: String(v.source), createdAt: Number(v.createdAt), expiresAt: now + pttl };
    } catch {
      return undefined;
    }
  }

  async unlock(key: string): Promise<boolean> {
    return (await this.redis.del(this.lockKey(key))) > 0;
  }

  async isLocked(key: string): Promise<LockEntry | undefined> {
    const k = this.lockKey(key);
    const now = Date.now();
    const res = await this.redis.multi().get(k).pttl(k).exec();
    if (!res) return undefined;
    const [getRes, ttlRes] = res;
    if (getRes?.[0] || ttlRes?.[0]) throw getRes?.[0] ?? ttlRes?.[0];
    return this.toEntry(key, getRes?.[1] as string | null, Number(ttlRes?.[1]), now);
  }

  async list(): Promise<LockEntry[]> {
    const out: LockEntry[] = [];
    const match = `${this.prefix}lock:*`;
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      for (const k of keys) {
        const entry = await this.isLocked(k.slice(`${this.prefix}lock:`.length));
        if (entry) out.push(entry);
      }
    } while (cursor !== '0');
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async allow(key: string, note: string): Promise<void> {
    const problem = lockKeyProblem(key, true);
    if (problem) throw new RangeError(problem);
    await this.redis.hset(this.allowKey, key, JSON.stringify({ note, createdAt: Date.now() }));
    this.allowCache = undefined;
  }

  async disallow(key: string): Promise<boolean> {
    this.allowCache = undefined;
    return (await this.redis.hdel(this.allowKey, key)) > 0;
  }

  async listAllowed(): Promise<AllowEntry[]> {
    const all = await this.redis.hgetall(this.allowKey);
    return Object.entries(all)
      .map(([key, json]) => {
        let note = '';
        let createdAt = 0;
        try {
          const v = JSON.parse(json) as { note?: unknown; createdAt?: unknown };
          note = String(v.note ?? '');
          createdAt = Number(v.createdAt ?? 0);
        } catch {
          /* a value written by something else: keep the key */
        }
        return { key, note, createdAt };
      })
      .sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /** Redis expires keys itself. */
  async sweep(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
