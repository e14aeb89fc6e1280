/**
 * An in-memory LockStore: for `policy test` scenarios, unit tests and single-process setups without a state
 * directory. Expired locks never count and are swept on a timer (optional) and by sweep(). Allow-list
 * entries for clients may be CIDR prefixes ("client:192.0.2.0/24").
 */
import type { Clock } from './providers.js';
import { SYSTEM_CLOCK } from './providers.js';
import type { AllowEntry, LockEntry, LockResult, LockStore } from './lock-store.js';
import { CidrSet, parseCidr, parseIp } from './ip-match.js';

export interface MemoryLockStoreOptions {
  readonly clock?: Clock;
  /** Sweep expired locks this often (0 = only when sweep() is called). The timer does not keep the process alive. */
  readonly sweepIntervalMs?: number;
  /** Most locks held; past it the soonest-expiring are dropped first (bounded memory). */
  readonly maxEntries?: number;
}

export class MemoryLockStore implements LockStore {
  private readonly locks = new Map<string, LockEntry>();
  private readonly allowed = new Map<string, AllowEntry>();
  private allowCidrs = new CidrSet();
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: MemoryLockStoreOptions = {}) {
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    this.maxEntries = opts.maxEntries ?? 1_000_000;
    if (opts.sweepIntervalMs && opts.sweepIntervalMs > 0) {
      this.timer = setInterval(() => void this.sweep(), opts.sweepIntervalMs);
      this.timer.unref();
    }
  }

  private isAllowed(key: string): boolean {
    if (this.allowed.has(key)) return true;
    if (key.startsWith('client:') && this.allowCidrs.size > 0) {
      const ip = parseIp(key.slice(7));
      if (ip && this.allowCidrs.has(ip)) return true;
    }
    return false;
  }

  async lock(key: string, durationMs: number, reason: string, source: string): Promise<LockResult> {
    if (this.isAllowed(key)) return { created: false, allowListed: true };
    const now = this.clock.now();
    const expiresAt = now + Math.max(0, durationMs);
    const cur = this.locks.get(key);
    if (cur && cur.expiresAt > now) {
      if (expiresAt > cur.expiresAt) {
        const entry = { ...cur, expiresAt };
        this.locks.set(key, entry);
        return { created: false, allowListed: false, entry };
      }
      return { created: false, allowListed: false, entry: cur };
    }
    if (this.locks.size >= this.maxEntries) {
      await this.sweep();
      if (this.locks.size >= this.maxEntries) {
        let soonest: LockEntry | undefined;
        for (const e of this.locks.values()) if (!soonest || e.expiresAt < soonest.expiresAt) soonest = e;
        if (soonest) this.locks.delete(soonest.key);
      }
    }
    const entry: LockEntry = { key, reason, source, createdAt: now, expiresAt };
    this.locks.set(key, entry);
    return { created: true, allowListed: false, entry };
  }

  async unlock(key: string): Promise<boolean> {
    return this.locks.delete(key);
  }

  async isLocked(key: string): Promise<LockEntry | undefined> {
    return this.lookup(key);
  }

  readonly isLockedNow = (key: string): LockEntry | undefined => this.lookup(key);

  private lookup(key: string): LockEntry | undefined {
    const e = this.locks.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= this.clock.now()) {
      this.locks.delete(key);
      return undefined;
    }
    if (this.isAllowed(key)) return undefined;
    return e;
  }

  async list(): Promise<LockEntry[]> {
    const now = this.clock.now();
    return [...this.locks.values()].filter((e) => e.expiresAt > now).sort((a, b) => a.key.localeCompare(b.key));
  }

  async allow(key: string, note: string): Promise<void> {
    this.allowed.set(key, { key, note, createdAt: this.clock.now() });
    this.rebuildCidrs();
  }

  async disallow(key: string): Promise<boolean> {
    const had = this.allowed.delete(key);
    this.rebuildCidrs();
    return had;
  }

  async listAllowed(): Promise<AllowEntry[]> {
    return [...this.allowed.values()].sort((a, b) => a.key.localeCompare(b.key));
  }

  async sweep(): Promise<number> {
    const now = this.clock.now();
    let n = 0;
    for (const [k, e] of this.locks) {
      if (e.expiresAt <= now) {
        this.locks.delete(k);
        n++;
      }
    }
    return n;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private rebuildCidrs(): void {
    const s = new CidrSet();
    for (const k of this.allowed.keys()) {
      if (!k.startsWith('client:')) continue;
      const c = parseCidr(k.slice(7));
      if (c && 'ip' in c) s.add(c);
    }
    this.allowCidrs = s;
  }
}
