/**
 * Starts an intercept door in fixed mode on a free loopback port in front of a given upstream, with a SQLite
 * lock store in a temp dir (also the hold-mode spool parent) and a recording logger, optionally a quarantine sink.
 * `stop()` stops the door, closes the store, removes the dir.
 */
import type { Limits } from '../../lib/core/limits.js';
import type { PolicyPort } from '../../lib/core/policy-port.js';
import type { QuarantineSink } from '../../lib/core/quarantine-sink.js';
import type { Door } from '../../lib/daemon/door.js';
import type { EffectRunner } from '../../lib/core/effects.js';
import type { ScannerSet } from '../../lib/scanners/scanner.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { createInterceptDoor, type InterceptDoorOptions } from '../../lib/intercept/intercept-door.js';
import { doorDeps, lockStoreIn, memoryLogger } from './postfix-door-deps.js';
import { freePort } from './ports.js';
import { compileRules, PolicyEngine } from '../../lib/policy/index.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { makeTempDir } from './temp-dir.js';

export interface InterceptHarness {
  readonly port: number;
  readonly door: Door;
  readonly locks: LockStore;
  readonly logger: ReturnType<typeof memoryLogger>;
  /** A private temp dir that lives as long as the door (lock store, hold spool parent, quarantine, ...). */
  readonly dir: string;
  /** Log records with this event name (NEW, MAIL, CLOSE, ...). */
  events(name: string): Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** The real rule engine over rule text, with the given lock store and the system clock (no SPF/DNS providers). */
export function realPolicy(rules: string, locks: LockStore, proxyName = 'sluice.test'): PolicyEngine {
  const ruleset = compileRules([{ file: 'test.rules', text: rules }]);
  return new PolicyEngine(ruleset, { locks, clock: SYSTEM_CLOCK }, { proxyName });
}

export async function startInterceptDoor(p: {
  upstreamPort: number;
  /** The policy, or a function building it on the harness's lock store (for the real PolicyEngine). */
  policy: PolicyPort | ((locks: LockStore) => PolicyPort);
  limits?: Partial<Limits>;
  scanners?: ScannerSet;
  effects?: EffectRunner;
  /** A quarantine sink, or a function building it in the harness's temp dir. */
  quarantine?: QuarantineSink | ((dir: string) => QuarantineSink);
  options?: Partial<InterceptDoorOptions>;
}): Promise<InterceptHarness> {
  const dir = makeTempDir('sluice-icpt-');
  const locks = lockStoreIn(dir.path);
  const logger = memoryLogger();
  const port = await freePort();
  const policy = typeof p.policy === 'function' ? p.policy(locks) : p.policy;
  const deps = doorDeps({ policy, locks, logger, ...(p.limits ? { limits: p.limits } : {}), ...(p.scanners ? { scanners: p.scanners } : {}), ...(p.effects ? { effects: p.effects } : {}) });
  const quarantine = typeof p.quarantine === 'function' ? p.quarantine(dir.path) : p.quarantine;
  const door = createInterceptDoor(
    { listeners: [{ listen: { ip: '127.0.0.1', port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: p.upstreamPort } }], holdDir: dir.path, ...p.options },
    { ...deps, ...(quarantine ? { quarantine } : {}) },
  );
  await door.start();
  return {
    port,
    door,
    locks,
    logger,
    dir: dir.path,
    events: (name) => logger.records.filter((r) => (r.obj as { event?: string }).event === name).map((r) => r.obj as Record<string, unknown>),
    async stop() {
      await door.stop(500);
      await locks.close();
      dir.remove();
    },
  };
}

/** Waits until `cond()` holds (polling), or throws after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
