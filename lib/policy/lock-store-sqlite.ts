/**
 * The default lock store: one SQLite file in the state directory, in WAL mode so several worker processes on one
 * host share it. Locks survive restarts; expired rows are swept on a timer, not only ignored on lookup.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type { Clock } from './providers.js';
import { SYSTEM_CLOCK } from './providers.js';
import type { AllowEntry, LockEntry, LockResult, LockStore } from './lock-store.js';
import { AllowListMatcher, lockKeyProblem } from './allow-list.js';

// better-sqlite3 12 wraps its objects in node::ObjectWrap, whose destructor aborts the process when a Statement is
// garbage-collected on Node >= 24.19 (nodejs/node#65446). 13 uses Node-API 10 (Node >= 22.14) and is immune, but
// does not load on Node 20. Same API: take 13 where Node-API 10 exists, 12 otherwise.
const Database: typeof BetterSqlite3 = createRequire(import.meta.url)(
  Number(process.versions.napi) >= 10 ? 'better-sqlite3-napi' : 'better-sqlite3',
);

export interface SqliteLockStoreOptions {
  /** How often expired locks are deleted; 0 disables the timer. Default 60 s. */
  readonly sweepIntervalMs?: number;
  readonly clock?: Clock;
  /** Milliseconds a writer waits for another process's lock on the file. */
  readonly busyTimeoutMs?: number;
}

interface LockRow {
  key: string;
  reason: string;
  source: string;
  created_at: number;
  expires_at: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS locks (
  key TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  source TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS locks_expiry ON locks(expires_at);
CREATE TABLE IF NOT EXISTS allow_list (
  key TEXT PRIMARY KEY,
  note TEXT NOT NULL,
  created_at INTEGER NOT NULL
);`;

function toEntry(row: LockRow): LockEntry {
  return { key: row.key, reason: row.reason, source: row.source, createdAt: row.created_at, expiresAt: row.expires_at };
}

function retryWhileBusy(budgetMs: number, fn: () => void): void {
  const deadline = Date.now() + budgetMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    try {
      fn();
      return;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if ((code !== 'SQLITE_BUSY' && code !== 'SQLITE_LOCKED') || Date.now() >= deadline) throw err;
      Atomics.wait(pause, 0, 0, wait); // a synchronous pause: the constructor is synchronous
    }
  }
}

export class SqliteLockStore implements LockStore {
  private readonly db: BetterSqlite3.Database;
  private readonly clock: Clock;
  private readonly timer: NodeJS.Timeout | undefined;
  private allowCache: { matcher: AllowListMatcher; version: number } | undefined;
  private readonly stmt;

  constructor(readonly path: string, opts: SqliteLockStoreOptions = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    const busyMs = opts.busyTimeoutMs ?? 5000;
    this.db = new Database(path, { timeout: busyMs });
    // Switching a new file to WAL and creating the schema need the file to themselves; SQLite answers SQLITE_BUSY
    // at once (no busy handler) when another process is doing the same. Retry within the busy timeout.
    retryWhileBusy(busyMs, () => {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.exec(SCHEMA);
    });
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    this.stmt = {
      get: this.db.prepare<[string, number], LockRow>('SELECT * FROM locks WHERE key = ? AND expires_at > ?'),
      insert: this.db.prepare('INSERT OR REPLACE INTO locks (key, reason, source, created_at, expires_at) VALUES (?, ?, ?, ?, ?)'),
      extend: this.db.prepare('UPDATE locks SET expires_at = ? WHERE key = ? AND expires_at < ?'),
      remove: this.db.prepare('DELETE FROM locks WHERE key = ?'),
      list: this.db.prepare<[number], LockRow>('SELECT * FROM locks WHERE expires_at > ? ORDER BY key'),
      sweep: this.db.prepare('DELETE FROM locks WHERE expires_at <= ?'),
      allow: this.db.prepare('INSERT OR REPLACE INTO allow_list (key, note, created_at) VALUES (?, ?, ?)'),
      disallow: this.db.prepare('DELETE FROM allow_list WHERE key = ?'),
      allowed: this.db.prepare<[], { key: string; note: string; created_at: number }>('SELECT * FROM allow_list ORDER BY key'),
      dataVersion: this.db.prepare<[], { data_version: number }>('PRAGMA data_version'),
    };
    const interval = opts.sweepIntervalMs ?? 60_000;
    if (interval > 0) {
      this.timer = setInterval(() => void this.sweep(), interval);
      this.timer.unref();
    }
  }

  /** The allow list, re-read only when this or another process changed the file. */
  private allowMatcher(): AllowListMatcher {
    const version = this.stmt.dataVersion.get()?.data_version ?? 0;
    if (!this.allowCache || this.allowCache.version !== version) {
      const keys = this.stmt.allowed.all().map((r) => r.key);
      this.allowCache = { matcher: new AllowListMatcher(keys), version };
    }
    return this.allowCache.matcher;
  }

  private readonly lockTx = (key: string, durationMs: number, reason: string, source: string): LockResult => {
    const now = this.clock.now();
    const expiresAt = now + durationMs;
    const existing = this.stmt.get.get(key, now);
    if (existing) {
      this.stmt.extend.run(expiresAt, key, expiresAt);
      const entry = toEntry({ ...existing, expires_at: Math.max(existing.expires_at, expiresAt) });
      return { created: false, allowListed: false, entry };
    }
    this.stmt.insert.run(key, reason, source, now, expiresAt);
    return { created: true, allowListed: false, entry: { key, reason, source, createdAt: now, expiresAt } };
  };

  async lock(key: string, durationMs: number, reason: string, source: string): Promise<LockResult> {
    const problem = lockKeyProblem(key);
    if (problem) throw new RangeError(problem);
    if (!(durationMs > 0)) throw new RangeError(`lock duration must be positive, got ${durationMs}`);
    // allow-list check and write in one immediate transaction: two processes cannot both "create" the same lock
    return this.db.transaction(() => {
      if (this.allowMatcher().matches(key)) return { created: false, allowListed: true };
      return this.lockTx(key, durationMs, reason, source);
    }).immediate();
  }

  async unlock(key: string): Promise<boolean> {
    return this.stmt.remove.run(key).changes > 0;
  }

  async isLocked(key: string): Promise<LockEntry | undefined> {
    return this.lookup(key);
  }

  readonly isLockedNow = (key: string): LockEntry | undefined => this.lookup(key);

  private lookup(key: string): LockEntry | undefined {
    const row = this.stmt.get.get(key, this.clock.now());
    return row ? toEntry(row) : undefined;
  }

  async list(): Promise<LockEntry[]> {
    return this.stmt.list.all(this.clock.now()).map(toEntry);
  }

  async allow(key: string, note: string): Promise<void> {
    const problem = lockKeyProblem(key, true);
    if (problem) throw new RangeError(problem);
    this.stmt.allow.run(key, note, this.clock.now());
    this.allowCache = undefined; // data_version only tracks other connections' writes
  }

  async disallow(key: string): Promise<boolean> {
    this.allowCache = undefined;
    return this.stmt.disallow.run(key).changes > 0;
  }

  async listAllowed(): Promise<AllowEntry[]> {
    return this.stmt.allowed.all().map((r) => ({ key: r.key, note: r.note, createdAt: r.created_at }));
  }

  async sweep(): Promise<number> {
    if (!this.db.open) return 0;
    return this.stmt.sweep.run(this.clock.now()).changes;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.db.open) this.db.close();
  }
}

export function openSqliteLockStore(path: string, opts?: SqliteLockStoreOptions): SqliteLockStore {
  return new SqliteLockStore(path, opts);
}
