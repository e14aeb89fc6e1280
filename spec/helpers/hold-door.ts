/**
 * An intercept door for the hold-mode tests: fixed mode on a free loopback port in front of a given upstream,
 * the real rule engine (optionally with verdict headers), a SQLite lock store, an optional quarantine sink and
 * scanners, and a recording logger. `stop()` stops the door, closes the store and removes the temp dir.
 */
import type { Limits } from '../../lib/core/limits.js';
import type { QuarantineSink } from '../../lib/core/quarantine-sink.js';
import type { Door } from '../../lib/daemon/door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import type { ScannerSet } from '../../lib/scanners/scanner.js';
import { createInterceptDoor, type InterceptDoorOptions } from '../../lib/intercept/intercept-door.js';
import { compileRules, PolicyEngine } from '../../lib/policy/index.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { doorDeps, lockStoreIn, memoryLogger } from './postfix-door-deps.js';
import { freePort } from './ports.js';
import { makeTempDir } from './temp-dir.js';

export interface HoldDoor {
  readonly port: number;
  readonly door: Door;
  readonly locks: LockStore;
  readonly logger: ReturnType<typeof memoryLogger>;
  /** A private temp dir that lives as long as the door (spool parent, quarantine, ...). */
  readonly dir: string;
  events(name: string): Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startHoldDoor(p: {
  upstreamPort: number;
  rules: string;
  verdictHeaders?: boolean;
  limits?: Partial<Limits>;
  scanners?: ScannerSet;
  quarantine?: QuarantineSink | ((dir: string) => QuarantineSink);
  options?: Partial<InterceptDoorOptions>;
}): Promise<HoldDoor> {
  const tmp = makeTempDir('sluice-hold-');
  const locks = lockStoreIn(tmp.path);
  const logger = memoryLogger();
  const port = await freePort();
  const policy = new PolicyEngine(compileRules([{ file: 'hold.rules', text: p.rules }]), { locks, clock: SYSTEM_CLOCK }, { proxyName: 'sluice.test', ...(p.verdictHeaders ? { verdictHeaders: true } : {}) });
  const base = doorDeps({ policy, locks, logger, ...(p.limits ? { limits: p.limits } : {}), ...(p.scanners ? { scanners: p.scanners } : {}) });
  const quarantine = typeof p.quarantine === 'function' ? p.quarantine(tmp.path) : p.quarantine;
  const door = createInterceptDoor(
    { listeners: [{ listen: { ip: '127.0.0.1', port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: p.upstreamPort } }], holdDir: tmp.path, ...p.options },
    { ...base, ...(quarantine ? { quarantine } : {}) },
  );
  await door.start();
  return {
    port,
    door,
    locks,
    logger,
    dir: tmp.path,
    events: (name) => logger.records.filter((r) => (r.obj as { event?: string }).event === name).map((r) => r.obj as Record<string, unknown>),
    async stop() {
      await door.stop(500);
      await locks.close();
      tmp.remove();
    },
  };
}
