/**
 * DoorDeps for the policy and filter door tests. `scriptedPolicy` is a PolicyPort whose decisions are a function
 * of (stage, transaction): it stands in for the rule engine where a test needs to observe exactly which stages a
 * door evaluates and with what facts (every call is recorded). Tests that exercise rules use the real engine.
 */
import { join } from 'node:path';
import { NO_EFFECTS, type EffectRunner } from '../../lib/core/effects.js';
import { DEFAULT_LIMITS, type Limits } from '../../lib/core/limits.js';
import { NULL_LOGGER, type Logger } from '../../lib/core/logger.js';
import type { PolicyNeeds, PolicyPort } from '../../lib/core/policy-port.js';
import { RULE_STAGES, type RuleStage } from '../../lib/core/stage.js';
import type { Transaction } from '../../lib/core/transaction.js';
import { CONTINUE, type Verdict } from '../../lib/core/verdict.js';
import type { DoorDeps } from '../../lib/daemon/door.js';
import { openSqliteLockStore } from '../../lib/policy/lock-store-sqlite.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { NO_SCANNERS, type ScannerSet } from '../../lib/scanners/scanner.js';

export interface PolicyCall {
  readonly stage: RuleStage;
  readonly tx: Transaction;
}

export interface ScriptedPolicy extends PolicyPort {
  readonly calls: PolicyCall[];
}

export type Decide = (stage: RuleStage, tx: Transaction) => Partial<Verdict> | undefined | Promise<Partial<Verdict> | undefined>;

export function scriptedPolicy(decide: Decide, needs?: Partial<PolicyNeeds>): ScriptedPolicy {
  const calls: PolicyCall[] = [];
  return {
    calls,
    needs: {
      stages: new Set(RULE_STAGES),
      headers: true,
      scan: false,
      spf: false,
      dnsLists: new Set(),
      ...needs,
    },
    async evaluate(stage, tx) {
      calls.push({ stage, tx });
      const v = await decide(stage, tx);
      return v === undefined ? CONTINUE : { ...CONTINUE, ...v };
    },
  };
}

/** A Logger that keeps records, for asserting what a door logged. */
export function memoryLogger(): Logger & { records: Array<{ level: string; obj: object; msg?: string }> } {
  const records: Array<{ level: string; obj: object; msg?: string }> = [];
  const make = (bindings: object): Logger => ({
    debug: (obj, msg) => records.push({ level: 'debug', obj: { ...bindings, ...obj }, ...(msg !== undefined ? { msg } : {}) }),
    info: (obj, msg) => records.push({ level: 'info', obj: { ...bindings, ...obj }, ...(msg !== undefined ? { msg } : {}) }),
    warn: (obj, msg) => records.push({ level: 'warn', obj: { ...bindings, ...obj }, ...(msg !== undefined ? { msg } : {}) }),
    error: (obj, msg) => records.push({ level: 'error', obj: { ...bindings, ...obj }, ...(msg !== undefined ? { msg } : {}) }),
    child: (b) => make({ ...bindings, ...b }),
    isLevelEnabled: () => true,
  });
  return Object.assign(make({}), { records });
}

export function lockStoreIn(dir: string): LockStore {
  return openSqliteLockStore(join(dir, 'locks.sqlite'));
}

export function doorDeps(p: {
  policy: PolicyPort;
  locks: LockStore;
  scanners?: ScannerSet;
  effects?: EffectRunner;
  limits?: Partial<Limits>;
  logger?: Logger;
}): DoorDeps {
  return {
    policy: p.policy,
    locks: p.locks,
    scanners: p.scanners ?? NO_SCANNERS,
    effects: p.effects ?? NO_EFFECTS,
    limits: { ...DEFAULT_LIMITS, ...p.limits },
    logger: p.logger ?? NULL_LOGGER,
    hostname: 'sluice.test',
  };
}
