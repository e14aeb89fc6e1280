import assert from 'node:assert/strict';
import { startTransaction, reduceTransaction, type Transaction } from '../../lib/core/transaction.js';
import { CONTINUE } from '../../lib/core/verdict.js';
import { compileRules, PolicyEngine, MemoryLockStore } from '../../lib/policy/index.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { withScannerFailureDefault } from '../../lib/daemon/scanner-failure-policy.js';
import { EMPTY_POLICY } from '../../lib/daemon/policy-loader.js';

function tx(failed: Record<string, string>): Transaction {
  const t = startTransaction({ stage: 'connect', door: 'test', client: { ip: '192.0.2.7', port: 40000 } }, 's1', 0);
  return reduceTransaction(t, { stage: 'scan', results: { failed } });
}

describe('daemon scanners.on_failure', () => {
  it('tempfails an undecided message whose scanner failed (the default)', async () => {
    const p = withScannerFailureDefault(EMPTY_POLICY, 'tempfail');
    const v = await p.evaluate('eom', tx({ clamd: 'timeout' }));
    assert.equal(v.action, 'tempfail');
    assert.deepEqual(v.reply, { code: 451, enhanced: '4.3.0', lines: ['Content scanner unavailable, please try again later'] });
    assert.equal(v.reason, 'scanner failed: clamd');
    assert.equal(await p.evaluate('eom', tx({})), CONTINUE);
    assert.equal((await p.evaluate('rcpt', tx({ clamd: 'x' }))).action, 'continue');
    assert.ok(p.needs.stages.has('eom'));
    assert.equal(p.needs.scan, true);
  });

  it('rejects with reject, and leaves the policy alone with accept', async () => {
    assert.equal((await withScannerFailureDefault(EMPTY_POLICY, 'reject').evaluate('eom', tx({ spamd: 'refused' }))).reply?.code, 554);
    assert.equal(withScannerFailureDefault(EMPTY_POLICY, 'accept'), EMPTY_POLICY);
  });

  it('never overrides a rule that decided', async () => {
    const rs = compileRules([{ file: 't.rules', text: 'rule ok at eom: scanner(clamd) failed => accept\n' }]);
    const engine = new PolicyEngine(rs, { locks: new MemoryLockStore(), clock: SYSTEM_CLOCK });
    const v = await withScannerFailureDefault(engine, 'tempfail').evaluate('eom', tx({ clamd: 'timeout' }));
    assert.equal(v.action, 'accept');
  });
});
