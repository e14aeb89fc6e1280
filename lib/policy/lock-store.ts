/**
 * Locks: a key (client address or authenticated user) refused for a while, with a reason.
 * Keys are "client:<ip>" or "auth:<user>" (see lockKey). Allow-list entries can never be locked;
 * for clients they may be CIDR prefixes ("client:192.0.2.0/24").
 */
export interface LockEntry {
  readonly key: string;
  readonly reason: string;
  /** Rule (or "manual") that set it. */
  readonly source: string;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export interface AllowEntry {
  readonly key: string;
  readonly note: string;
  readonly createdAt: number;
}

export interface LockResult {
  /** False when the key was already locked (then the expiry is extended if later) or is allow-listed. */
  readonly created: boolean;
  readonly allowListed: boolean;
  readonly entry?: LockEntry;
}

export interface LockStore {
  lock(key: string, durationMs: number, reason: string, source: string): Promise<LockResult>;
  unlock(key: string): Promise<boolean>;
  /** The live lock on the key, or undefined (expired locks never count). */
  isLocked(key: string): Promise<LockEntry | undefined>;
  /**
   * The same answer as isLocked, synchronously, for stores that hold their data in the process (memory,
   * SQLite). Rules read a lock at every stage, and this spares each read a promise and a timer. Throws when
   * the store fails; absent on stores that must wait for I/O (Redis).
   */
  readonly isLockedNow?: (key: string) => LockEntry | undefined;
  list(): Promise<LockEntry[]>;
  allow(key: string, note: string): Promise<void>;
  disallow(key: string): Promise<boolean>;
  listAllowed(): Promise<AllowEntry[]>;
  /** Deletes expired locks; returns how many. Stores also run this on a timer. */
  sweep(): Promise<number>;
  close(): Promise<void>;
}

export function lockKey(subject: 'client' | 'auth', value: string): string {
  return `${subject}:${value}`;
}
