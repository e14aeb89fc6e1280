import assert from 'node:assert/strict';
import { MemoryLockStore } from '../../lib/policy/lock-store-memory.js';
import { CidrSet, parseCidr, parseIp } from '../../lib/policy/ip-match.js';

describe('policy/lock-store-memory', () => {
  let now = 1_000_000;
  const clock = { now: () => now };

  it('creates a lock once, extends it, and reports created only the first time', async () => {
    const s = new MemoryLockStore({ clock });
    const a = await s.lock('client:192.0.2.1', 60_000, 'REGEX_HELO', 'bad-helo');
    assert.equal(a.created, true);
    assert.equal(a.entry?.expiresAt, now + 60_000);
    const b = await s.lock('client:192.0.2.1', 120_000, 'again', 'bad-helo');
    assert.equal(b.created, false);
    assert.equal(b.entry?.expiresAt, now + 120_000);
    assert.equal(b.entry?.reason, 'REGEX_HELO');
    assert.equal((await s.isLocked('client:192.0.2.1'))?.reason, 'REGEX_HELO');
  });

  it('expired locks never count and are swept', async () => {
    const s = new MemoryLockStore({ clock });
    await s.lock('client:192.0.2.2', 1000, 'x', 'r');
    await s.lock('auth:bob', 5000, 'y', 'r');
    now += 2000;
    assert.equal(await s.isLocked('client:192.0.2.2'), undefined);
    assert.deepEqual((await s.list()).map((e) => e.key), ['auth:bob']);
    now += 5000;
    assert.equal(await s.sweep(), 1);
    assert.deepEqual(await s.list(), []);
    // After expiry a new lock is created again (the hook fires once per lock period).
    assert.equal((await s.lock('client:192.0.2.2', 1000, 'x', 'r')).created, true);
  });

  it('allow-listed keys (exact or client CIDR) are never locked', async () => {
    const s = new MemoryLockStore({ clock });
    await s.allow('client:198.51.100.0/24', 'office');
    await s.allow('auth:postmaster', 'admin');
    assert.deepEqual(await s.lock('client:198.51.100.77', 1000, 'x', 'r'), { created: false, allowListed: true });
    assert.deepEqual(await s.lock('auth:postmaster', 1000, 'x', 'r'), { created: false, allowListed: true });
    assert.equal((await s.lock('client:198.51.101.1', 1000, 'x', 'r')).created, true);
    assert.deepEqual((await s.listAllowed()).map((a) => a.key), ['auth:postmaster', 'client:198.51.100.0/24']);
    assert.equal(await s.disallow('client:198.51.100.0/24'), true);
    assert.equal((await s.lock('client:198.51.100.77', 1000, 'x', 'r')).created, true);
  });

  it('unlock removes a lock; the store is bounded', async () => {
    const s = new MemoryLockStore({ clock, maxEntries: 3 });
    for (let i = 0; i < 5; i++) await s.lock(`client:192.0.2.${i}`, 1000 + i, 'x', 'r');
    assert.equal((await s.list()).length, 3);
    assert.equal(await s.unlock('client:192.0.2.4'), true);
    assert.equal(await s.isLocked('client:192.0.2.4'), undefined);
    await s.close();
  });
});

describe('policy/ip-match', () => {
  it('parses IPv4, IPv6, mapped and bracketed addresses', () => {
    assert.deepEqual(parseIp('192.0.2.1'), { v6: false, words: [0xc0000201] });
    assert.deepEqual(parseIp('::ffff:192.0.2.1'), { v6: false, words: [0xc0000201] });
    assert.deepEqual(parseIp('[2001:db8::1]'), { v6: true, words: [0x20010db8, 0, 0, 1] });
    assert.deepEqual(parseIp('IPv6:::1'), { v6: true, words: [0, 0, 0, 1] });
    assert.deepEqual(parseIp('fe80::1%eth0'), { v6: true, words: [0xfe800000, 0, 0, 1] });
    assert.equal(parseIp('999.1.1.1'), undefined);
    assert.equal(parseIp('example.com'), undefined);
  });

  it('matches prefixes of every length, IPv4 and IPv6', () => {
    const set = new CidrSet();
    for (const c of ['0.0.0.0/0', '2001:db8::/32', '2001:db8:1:2::/64', '2001:db8:ffff:ffff:ffff::/80', '::1']) {
      const p = parseCidr(c);
      assert.ok(p && 'ip' in p, c);
      set.add(p);
    }
    assert.equal(set.has(parseIp('203.0.113.1') as never), true);
    assert.equal(set.has(parseIp('2001:db8:5::1') as never), true);
    assert.equal(set.has(parseIp('2001:db9::1') as never), false);
    assert.equal(set.has(parseIp('::1') as never), true);
    assert.equal(set.has(parseIp('::2') as never), false);
    const six = new CidrSet();
    const p = parseCidr('2001:db8:ffff:ffff:ffff::/80');
    assert.ok(p && 'ip' in p);
    six.add(p);
    assert.equal(six.has(parseIp('2001:db8:ffff:ffff:ffff:1::') as never), true);
    assert.equal(six.has(parseIp('2001:db8:ffff:ffff:fffe::1') as never), false);
    const v4 = new CidrSet();
    const q = parseCidr('192.0.2.128/25');
    assert.ok(q && 'ip' in q);
    v4.add(q);
    assert.equal(v4.has(parseIp('192.0.2.255') as never), true);
    assert.equal(v4.has(parseIp('192.0.2.127') as never), false);
  });

  it('refuses prefixes with host bits and bad lengths', () => {
    assert.deepEqual(parseCidr('10.0.0.1/8'), { error: '10.0.0.1/8 has host bits set; the network is 10.0.0.0/8' });
    assert.deepEqual(parseCidr('10.0.0.0/33'), { error: 'prefix length "/33" is out of range (0-32)' });
    assert.equal(parseCidr('nope/8'), undefined);
  });
});
