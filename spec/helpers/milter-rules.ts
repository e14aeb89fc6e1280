/**
 * Policies the milter integration tests run behind the door.
 *
 * `milterTestEngine()`: the real PolicyEngine with spec/fixtures/milter/milter-test.rules (read that file for the
 * behaviours the specs assert).
 *
 * `milterEditPolicy()`: header edits the rule language cannot express yet (change and delete), scripted, to prove
 * SMFIR_CHGHEADER index semantics against real Postfix:
 *   eom: change Subject #1 to "[checked] <subject>"; delete every X-Remove-Me header; add X-Edited: yes;
 *        insert X-Top: first at index 0 (above Postfix's own Received); add a two-line X-Folded.
 */
import { join } from 'node:path';
import type { PolicyPort } from '../../lib/core/policy-port.js';
import type { Verdict } from '../../lib/core/verdict.js';
import { compileRuleFiles, MemoryLockStore, PolicyEngine } from '../../lib/policy/index.js';
import { scriptedPolicy } from './milter-client.js';
import { fixturesDir } from './paths.js';

export const MILTER_TEST_RULES = join(fixturesDir, 'milter', 'milter-test.rules');

export async function milterTestEngine(): Promise<PolicyEngine> {
  const ruleset = await compileRuleFiles([MILTER_TEST_RULES]);
  return new PolicyEngine(ruleset, { locks: new MemoryLockStore(), clock: { now: () => Date.now() } }, { proxyName: 'sluice.test' });
}

const v = (x: Partial<Verdict> & Pick<Verdict, 'action'>): Verdict => ({ mutations: [], effects: [], hits: [], ...x });

export function milterEditPolicy(): PolicyPort {
  return scriptedPolicy(
    ['eom'],
    (stage, tx) => {
      if (stage !== 'eom') return undefined;
      const subject = tx.message.headers.find(([n]) => n.toLowerCase() === 'subject');
      const removals = tx.message.headers.filter(([n]) => n.toLowerCase() === 'x-remove-me').map((_h, i) => ({ kind: 'change' as const, name: 'X-Remove-Me', index: i + 1, value: '' }));
      return v({
        action: 'continue',
        mutations: [
          ...(subject ? [{ kind: 'change' as const, name: 'Subject', index: 1, value: `[checked] ${subject[1]}` }] : []),
          ...removals,
          { kind: 'add', name: 'X-Edited', value: 'yes' },
          { kind: 'insert', name: 'X-Top', value: 'first', index: 0 },
          { kind: 'add', name: 'X-Folded', value: 'line one\nline two' },
        ],
      });
    },
    { headers: true },
  );
}
