import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiagnosticsError } from '../../lib/core/errors.js';
import { reduceTransaction, startTransaction, type Transaction } from '../../lib/core/transaction.js';
import { loadPolicy } from '../../lib/daemon/policy-loader.js';
import { MemoryLockStore } from '../../lib/policy/index.js';
import { SYSTEM_CLOCK, type SpfProvider } from '../../lib/policy/providers.js';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { makeTempDir } from '../helpers/temp-dir.js';

function tx(auth?: string): Transaction {
  let t = startTransaction({ stage: 'connect', door: 'test', client: { ip: '192.0.2.7', port: 40000 } }, 's1', 0);
  t = reduceTransaction(t, { stage: 'helo', name: 'client.test', extended: true });
  if (auth) t = reduceTransaction(t, { stage: 'auth', user: auth });
  return reduceTransaction(t, { stage: 'mail', address: 'a@example.test' });
}

describe('daemon policy loader', () => {
  let tmp: { path: string; remove: () => void };
  beforeEach(() => (tmp = makeTempDir()));
  afterEach(() => tmp.remove());

  it('compiles rule files and reports every problem as diagnostics with positions', async () => {
    const file = join(tmp.path, 'bad.rules');
    writeFileSync(file, 'rule a at mail: sender ~ => reject\nrule b at mail: dnsbl("nolist") listed => reject\n');
    await assert.rejects(loadPolicy([file], { dnsLists: new Set(), hooks: new Set() }), (err: unknown) => {
      assert.ok(err instanceof DiagnosticsError);
      assert.ok(err.diagnostics.length >= 2, err.message);
      assert.ok(err.diagnostics.every((d) => d.location?.file === file));
      return true;
    });
  });

  it('spf.skip_authenticated: authenticated sessions get SPF none without a lookup', async () => {
    const file = join(tmp.path, 'spf.rules');
    writeFileSync(file, 'rule spf_fail at mail: spf == fail => reject 550 5.7.23 "SPF fail"\n');
    let lookups = 0;
    const spf: SpfProvider = { check: async () => (lookups++, { result: 'fail', identity: 'mailfrom' }) };
    const loaded = await loadPolicy([file], { dnsLists: new Set(), hooks: new Set() }, { providers: { locks: new MemoryLockStore(), clock: SYSTEM_CLOCK, spf }, logger: NULL_LOGGER, hostname: 'gw.test', skipSpfWhenAuthenticated: true });
    assert.equal(loaded.rules, 1);
    assert.equal((await loaded.policy.evaluate('mail', tx())).action, 'reject');
    assert.equal(lookups, 1);
    assert.equal((await loaded.policy.evaluate('mail', tx('alice'))).action, 'continue');
    assert.equal(lookups, 1);
  });
});
