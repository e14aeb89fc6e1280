/**
 * The composition root: turns one SluiceConfig into the parts doors need (policy engine with its providers,
 * lock store, scanners, effect runner), as a Runtime. Nothing else reads the configuration. A reload builds a
 * whole new Runtime before anything is swapped; the lock store is carried over when its settings did not change.
 */
import { NO_EFFECTS, type EffectRunner } from '../core/effects.js';
import type { Logger } from '../core/logger.js';
import type { LockStore } from '../policy/lock-store.js';
import { NO_SCANNERS, type ScannerSet } from '../scanners/scanner.js';
import type { SluiceConfig } from './config-types.js';
import type { DoorDeps } from './door.js';
import { openLockStore } from './lock-store-factory.js';
import { createScannerSet, type ScannerSetOptions } from '../scanners/scanner-set.js';
import { createActionHookRunner } from './action-hook-runner.js';
import type { ScannersConfig } from './config-types.js';
import type { QuarantineSink } from '../core/quarantine-sink.js';
import { QuarantineStore } from './quarantine-store.js';
import { loadPolicy, ruleContext, type LoadedPolicy } from './policy-loader.js';
import { buildProviders } from './providers-factory.js';
import { withScannerFailureDefault } from './scanner-failure-policy.js';

export interface Runtime {
  readonly config: SluiceConfig;
  readonly policy: LoadedPolicy;
  readonly locks: LockStore;
  readonly scanners: ScannerSet;
  readonly effects: EffectRunner;
  /** The deps one door gets (its own child logger). */
  depsFor(door: string, logger: Logger): DoorDeps;
  /** Releases what this runtime owns; `keepLocks` when the next runtime took the lock store over. */
  close(keepLocks: boolean): Promise<void>;
}

/** The scanners section as the scanner set wants it. */
export function scannerSetOptions(s: ScannersConfig): ScannerSetOptions {
  return {
    ...(s.clamd ? { clamd: { address: s.clamd.address, timeout: s.clamd.timeout, maxSize: s.clamd.maxSize } } : {}),
    ...(s.spamd
      ? { spamd: { address: s.spamd.address, timeout: s.spamd.timeout, maxSize: s.spamd.maxSize, ...(s.spamd.threshold !== undefined ? { threshold: s.spamd.threshold } : {}), ...(s.spamd.user !== undefined ? { user: s.spamd.user } : {}) } }
      : {}),
    ...(s.filter ? { filter: { command: s.filter.command, mode: s.filter.mode, timeout: s.filter.timeout, maxSize: s.filter.maxSize, tempDir: s.filter.tempDir } } : {}),
  };
}

/** The quarantine store, created (mkdir 0700) only when the first message is quarantined. */
function lazyQuarantine(dir: string): QuarantineSink {
  let store: QuarantineStore | undefined;
  return {
    add: async (meta, message) => {
      store ??= new QuarantineStore(dir);
      return await store.add(meta, message);
    },
  };
}

function sameLocks(a: SluiceConfig, b: SluiceConfig): boolean {
  return JSON.stringify(a.locks) === JSON.stringify(b.locks);
}

/** Builds everything or nothing: on failure, what was opened so far is closed again and the error rethrown. */
export async function buildRuntime(config: SluiceConfig, logger: Logger, previous?: Runtime): Promise<Runtime> {
  const cleanups: Array<() => Promise<void> | void> = [];
  try {
    const reuseLocks = previous !== undefined && sameLocks(previous.config, config);
    const locks = reuseLocks ? previous.locks : await openLockStore(config.locks);
    // A store carried over from the previous runtime belongs to this one from now on (closed at its close()).
    if (!reuseLocks) cleanups.push(() => locks.close());

    const built = await buildProviders(config, locks, logger);
    cleanups.push(() => built.close());

    const policy = await loadPolicy(config.rules, ruleContext(config), {
      providers: built.providers,
      logger: logger.child({ component: 'policy' }),
      hostname: config.hostname,
      skipSpfWhenAuthenticated: config.spf.skipAuthenticated,
      verdictHeaders: config.scanners.verdictHeaders,
    });
    if (policy.close) cleanups.push(() => policy.close?.());

    let scanners: ScannerSet = NO_SCANNERS;
    const s = config.scanners;
    if (s.clamd || s.spamd || s.filter) {
      scanners = createScannerSet(scannerSetOptions(s), logger.child({ component: 'scanners' }));
      const set = scanners;
      cleanups.push(() => set.close());
    }

    let effects: EffectRunner = NO_EFFECTS;
    const hookNames = Object.keys(config.hooks);
    if (hookNames.length > 0) {
      const runner = createActionHookRunner({ hooks: config.hooks, proxyName: config.hostname }, logger.child({ component: 'hooks' }));
      effects = runner;
      cleanups.push(() => runner.close());
    }

    // Quarantine verdicts go to the store `sluice quarantine` lists and releases (directory made on first use).
    const quarantine = lazyQuarantine(config.quarantine.dir);
    const doorPolicy = scanners.enabled ? withScannerFailureDefault(policy.policy, s.onFailure) : policy.policy;
    const owned = cleanups.slice(reuseLocks ? 0 : 1);
    return {
      config,
      policy,
      locks,
      scanners,
      effects,
      depsFor: (door, doorLogger) => ({
        policy: doorPolicy,
        locks,
        scanners,
        effects,
        limits: config.limits,
        logger: doorLogger,
        hostname: config.hostname,
        quarantine,
      }),
      close: async (keepLocks) => {
        const all = keepLocks ? owned : [() => locks.close(), ...owned];
        for (const c of [...all].reverse()) {
          try {
            await c();
          } catch (err) {
            logger.warn({ err }, 'error while releasing a runtime part');
          }
        }
      },
    };
  } catch (err) {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* already failing */
      }
    }
    throw err;
  }
}
