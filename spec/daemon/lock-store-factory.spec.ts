import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../lib/daemon/config-loader.js';
import { openConfiguredLockStore, openLockStore } from '../../lib/daemon/lock-store-factory.js';
import { makeTempDir } from '../helpers/temp-dir.js';

describe('daemon lock store from the configuration', () => {
  let tmp: { path: string; remove: () => void };
  beforeEach(() => (tmp = makeTempDir()));
  afterEach(() => tmp.remove());

  it('opens the SQLite store in state_dir by default', async () => {
    const file = join(tmp.path, 'sluice.yaml');
    writeFileSync(file, 'state_dir: state\npolicyd: { listen: 127.0.0.1:10029 }\n');
    const store = await openConfiguredLockStore(file);
    try {
      await store.lock('client:192.0.2.7', 60_000, 'test', 'manual');
      assert.equal((await store.isLocked('client:192.0.2.7'))?.reason, 'test');
    } finally {
      await store.close();
    }
    assert.ok(existsSync(join(tmp.path, 'state', 'locks.sqlite')));
  });

  it('layers the configured allow list over the store: allowed keys are never locked', async () => {
    const c = parseConfig('locks: { store: memory, allow: [192.0.2.0/24, "auth:postmaster"] }\npolicyd: { listen: 127.0.0.1:10029 }\n', join(tmp.path, 'x.yaml'));
    const store = await openLockStore(c.locks);
    try {
      assert.deepEqual(await store.lock('client:192.0.2.99', 60_000, 'r', 'rule'), { created: false, allowListed: true });
      assert.deepEqual(await store.lock('auth:postmaster', 60_000, 'r', 'rule'), { created: false, allowListed: true });
      assert.equal((await store.lock('client:198.51.100.1', 60_000, 'r', 'rule')).created, true);
      assert.equal(await store.isLocked('client:192.0.2.99'), undefined);
      const allowed = (await store.listAllowed()).map((e) => [e.key, e.note]);
      assert.deepEqual(allowed, [
        ['client:192.0.2.0/24', 'configuration (locks.allow)'],
        ['auth:postmaster', 'configuration (locks.allow)'],
      ]);
    } finally {
      await store.close();
    }
  });
});
