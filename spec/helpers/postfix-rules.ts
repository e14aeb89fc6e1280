/**
 * The real PolicyEngine with spec/fixtures/postfix/postfix-test.rules, for the Postfix door integration tests,
 * wrapped so a test can also see which stages a door evaluated and the transaction the rules saw at each
 * (the verdicts are the engine's own).
 */
import { join } from 'node:path';
import type { PolicyPort } from '../../lib/core/policy-port.js';
import { compileRuleFiles, MemoryLockStore, PolicyEngine } from '../../lib/policy/index.js';
import { fixturesDir } from './paths.js';
import type { PolicyCall } from './postfix-door-deps.js';

export const POSTFIX_TEST_RULES = join(fixturesDir, 'postfix', 'postfix-test.rules');

export interface RecordingPolicy extends PolicyPort {
  readonly calls: PolicyCall[];
}

export async function postfixTestEngine(): Promise<RecordingPolicy> {
  const ruleset = await compileRuleFiles([POSTFIX_TEST_RULES]);
  const engine = new PolicyEngine(ruleset, { locks: new MemoryLockStore(), clock: { now: () => Date.now() } }, { proxyName: 'sluice.test' });
  const calls: PolicyCall[] = [];
  return {
    calls,
    get needs() {
      return engine.needs;
    },
    async evaluate(stage, tx) {
      calls.push({ stage, tx });
      return await engine.evaluate(stage, tx);
    },
  };
}
