/**
 * Opens the lock store a configuration names. Placeholder until the configuration loader lands: it is replaced
 * by the composition root's own factory (lib/daemon), which reads the `locks` section.
 */
import type { LockStore } from '../policy/lock-store.js';

export async function openConfiguredLockStore(configPath: string): Promise<LockStore> {
  throw new Error(`reading the lock store from ${configPath} is not wired yet; use --db FILE or --redis URL`);
}
