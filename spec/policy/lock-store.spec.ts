import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { SqliteLockStore } from '../../lib/policy/lock-store-sqlite.js';
import { RedisLockStore } from '../../lib/policy/lock-store-redis.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { redisAvailable, startRedis, type RunningRedis } from '../helpers/redis-server.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The behaviour every LockStore must have, run against each implementation. */
function conformance(open: () => Promise<LockStore>): void {
  let store: LockStore;
  beforeEach(async () => {
    store = await open();
  });
  afterEach(async () => {
    await store.close();
  });

  it('creates a lock once, then reports it as existing and extends a later expiry', async () => {
    const first = await store.lock('client:192.0.2.7', 60_000, 'REGEX_HELO', 'bad-helo');
    assert.equal(first.created, true);
    assert.equal(first.allowListed, false);
    const again = await store.lock('client:192.0.2.7', 120_000, 'OTHER', 'other-rule');
    assert.equal(again.created, false);
    assert.equal(again.entry?.reason, 'REGEX_HELO', 'the first reason is kept');
    const live = await store.isLocked('client:192.0.2.7');
    assert.ok(live);
    assert.equal(live.source, 'bad-helo');
    assert.ok(live.expiresAt - Date.now() > 90_000, 'expiry extended to the later one');
  });

  it('unlocks and lists', async () => {
    await store.lock('client:2001:db8::1', 60_000, 'r1', 'a');
    await store.lock('auth:alice', 60_000, 'r2', 'b');
    assert.deepEqual((await store.list()).map((e) => e.key), ['auth:alice', 'client:2001:db8::1']);
    assert.equal(await store.unlock('auth:alice'), true);
    assert.equal(await store.unlock('auth:alice'), false);
    assert.equal(await store.isLocked('auth:alice'), undefined);
  });

  it('never locks allow-listed keys, exact or by CIDR prefix (IPv4 and IPv6)', async () => {
    await store.allow('client:198.51.100.0/24', 'office');
    await store.allow('client:2001:db8:1::/48', 'v6 office');
    await store.allow('auth:postmaster', 'staff');
    for (const key of ['client:198.51.100.77', 'client:2001:db8:1::5', 'auth:postmaster']) {
      const r = await store.lock(key, 60_000, 'x', 'rule');
      assert.deepEqual([r.created, r.allowListed], [false, true], key);
      assert.equal(await store.isLocked(key), undefined, key);
    }
    assert.equal((await store.lock('client:198.51.101.1', 60_000, 'x', 'rule')).created, true);
    assert.deepEqual((await store.listAllowed()).map((a) => a.key), ['auth:postmaster', 'client:198.51.100.0/24', 'client:2001:db8:1::/48']);
    assert.equal(await store.disallow('auth:postmaster'), true);
    assert.equal((await store.lock('auth:postmaster', 60_000, 'x', 'rule')).created, true);
  });

  it('refuses malformed keys and durations with a reason', async () => {
    await assert.rejects(store.lock('host:1.2.3.4', 1000, 'x', 'r'), /must start with "client:" or "auth:"/);
    await assert.rejects(store.lock('client:not-an-ip', 1000, 'x', 'r'), /not an IP address/);
    await assert.rejects(store.lock('client:192.0.2.1', 0, 'x', 'r'), /duration must be positive/);
    await assert.rejects(store.allow('client:192.0.2.0/33', 'x'), /not an IP address or CIDR prefix/);
  });

  it('forgets expired locks', async () => {
    await store.lock('client:192.0.2.9', 150, 'short', 'r');
    assert.ok(await store.isLocked('client:192.0.2.9'));
    await sleep(400);
    assert.equal(await store.isLocked('client:192.0.2.9'), undefined);
    assert.equal((await store.lock('client:192.0.2.9', 60_000, 'again', 'r')).created, true, 'a new lock after expiry is new');
  });
}

describe('policy/lock-store-sqlite', () => {
  const dir = makeTempDir('sluice-locks-');
  let n = 0;
  after(() => dir.remove());
  conformance(async () => new SqliteLockStore(join(dir.path, `locks-${n++}.db`), { sweepIntervalMs: 0 }));

  it('keeps locks across restart and sweeps expired rows', async () => {
    const path = join(dir.path, 'persist.db');
    let now = 1_000_000;
    const clock = { now: () => now };
    const a = new SqliteLockStore(path, { sweepIntervalMs: 0, clock });
    await a.lock('client:192.0.2.1', 10_000, 'kept', 'r');
    await a.lock('client:192.0.2.2', 1_000, 'short', 'r');
    await a.close();
    const b = new SqliteLockStore(path, { sweepIntervalMs: 0, clock });
    assert.equal((await b.isLocked('client:192.0.2.1'))?.reason, 'kept');
    now += 5_000;
    assert.equal(await b.sweep(), 1, 'the expired row is deleted, not only ignored');
    assert.equal((await b.list()).length, 1);
    await b.close();
  });

  it('is shared by several processes on one file: exactly one creates the lock', async () => {
    const path = join(dir.path, 'shared.db');
    // Four processes race to lock the same key through the compiled store.
    const storeModule = new URL('../../lib/policy/lock-store-sqlite.js', import.meta.url).href;
    const code = `const { SqliteLockStore } = await import(${JSON.stringify(storeModule)});
      const s = new SqliteLockStore(${JSON.stringify(path)}, { sweepIntervalMs: 0 });
      const r = await s.lock('client:203.0.113.5', 60000, 'race', 'r'); await s.close();
      process.stdout.write(r.created ? 'created' : 'existing');`;
    const runs = await Promise.all(
      [0, 1, 2, 3, 4, 5, 6, 7].map(
        () =>
          new Promise<string>((resolve) => {
            const child = spawn(process.execPath, ['--input-type=module', '-e', code]);
            let out = '';
            child.stdout.on('data', (d: Buffer) => (out += d.toString()));
            child.stderr.on('data', (d: Buffer) => (out += d.toString()));
            child.on('close', () => resolve(out));
          }),
      ),
    );
    assert.deepEqual(runs.sort(), ['created', ...Array(7).fill('existing')]);
  });
});

describe('policy/lock-store-redis (real redis-server)', function () {
  let redis: RunningRedis | undefined;
  let n = 0;
  before(async function () {
    requirePeer(this, redisAvailable(), 'redis-server (Debian package redis-server)');
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });
  conformance(async () => new RedisLockStore({ url: redis!.url, prefix: `t${n++}:` }));

  it('a lock set through one node is seen by another', async () => {
    const a = new RedisLockStore({ url: redis!.url, prefix: 'shared:' });
    const b = new RedisLockStore({ url: redis!.url, prefix: 'shared:' });
    try {
      assert.equal((await a.lock('client:192.0.2.44', 60_000, 'VIRUS', 'virus-lock')).created, true);
      assert.equal((await b.isLocked('client:192.0.2.44'))?.reason, 'VIRUS');
      assert.equal((await b.lock('client:192.0.2.44', 60_000, 'VIRUS', 'virus-lock')).created, false);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
