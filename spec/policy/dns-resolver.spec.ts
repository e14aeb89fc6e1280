import { strict as assert } from 'node:assert';
import { DnsResolver } from '../../lib/policy/dns-resolver.js';
import { DnsError } from '../../lib/policy/dns-types.js';
import { parseResolvConf } from '../../lib/policy/dns-resolv-conf.js';
import { reverseAddress } from '../../lib/policy/dns-name.js';
import { startTestDnsServer, type TestDnsServer } from '../helpers/dns-server.js';

const ZONE = {
  'host.example.test': [
    { type: 'A', data: '192.0.2.1' },
    { type: 'A', data: '192.0.2.2' },
    { type: 'AAAA', data: '2001:db8::1' },
  ],
  'txt.example.test': [
    { type: 'TXT', data: 'v=spf1 -all' },
    { type: 'TXT', data: '' },
    { type: 'TXT', data: [] },
    { type: 'TXT', data: ['two ', 'strings'] },
  ],
  'mx.example.test': [
    { type: 'MX', data: { preference: 20, exchange: 'b.example.test' } },
    { type: 'MX', data: { preference: 10, exchange: 'a.example.test.' } },
  ],
  'alias.example.test': [{ type: 'CNAME', data: 'host.example.test' }],
  'short.example.test': [{ type: 'A', data: '192.0.2.9', ttl: 5 }],
  'odd label%_=.example.test': [{ type: 'A', data: '192.0.2.77' }],
  'long.example.test': [{ type: 'TXT', data: 'x'.repeat(700) }],
} as const;

describe('dns-resolver (against spec/helpers/dns-server)', function () {
  let server: TestDnsServer;
  let silent: TestDnsServer;
  let now = 1_000_000;
  const clock = (): number => now;

  before(async () => {
    server = await startTestDnsServer({ zone: ZONE, negativeTtl: 30 });
    silent = await startTestDnsServer({ zone: ZONE });
    silent.silent = true;
  });
  after(async () => {
    await server.stop();
    await silent.stop();
  });
  beforeEach(() => {
    server.seen.length = 0;
    server.silent = false;
    server.truncateUdp = false;
    server.servfail = false;
    server.delayMs = 0;
    silent.seen.length = 0;
  });

  const make = (extra: object = {}): DnsResolver =>
    new DnsResolver({ servers: [server.address], timeoutMs: 300, retries: 1, now: clock, ...extra });

  it('answers A, AAAA, MX and follows a CNAME', async () => {
    const r = make();
    const a = await r.query('host.example.test', 'A');
    assert.deepEqual([...a.records].sort(), ['192.0.2.1', '192.0.2.2']);
    assert.equal(a.rcode, 'NOERROR');
    assert.deepEqual((await r.query('HOST.example.test.', 'AAAA')).records, ['2001:db8::1']);
    const mx = await r.query('mx.example.test', 'MX');
    assert.deepEqual(
      [...mx.records].sort((x, y) => x.preference - y.preference),
      [
        { preference: 10, exchange: 'a.example.test' },
        { preference: 20, exchange: 'b.example.test' },
      ],
    );
    const c = await r.query('alias.example.test', 'A');
    assert.deepEqual([...c.records].sort(), ['192.0.2.1', '192.0.2.2']);
  });

  it('keeps empty TXT records and empty strings, and multi-string records as parts', async () => {
    const r = make();
    const t = await r.query('txt.example.test', 'TXT');
    const shown = t.records.map((rec) => rec.map((b) => b.toString('latin1')));
    assert.equal(shown.length, 4);
    assert.deepEqual(
      shown.map((s) => JSON.stringify(s)).sort(),
      ['["v=spf1 -all"]', '[""]', '[]', '["two ","strings"]'].sort(),
    );
  });

  it('caches positive answers for their TTL, then asks again', async () => {
    const r = make();
    await r.query('short.example.test', 'A');
    const again = await r.query('short.example.test', 'A');
    assert.equal(again.cached, true);
    assert.equal(server.seen.length, 1);
    now += 6_000;
    const third = await r.query('short.example.test', 'A');
    assert.equal(third.cached, false);
    assert.equal(server.seen.length, 2);
  });

  it('caches NXDOMAIN and NODATA for the SOA negative TTL (RFC 2308)', async () => {
    const r = make();
    const nx = await r.query('nope.example.test', 'A');
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.ttl, 30);
    const nodata = await r.query('host.example.test', 'MX');
    assert.equal(nodata.rcode, 'NOERROR');
    assert.equal(nodata.records.length, 0);
    assert.equal((await r.query('nope.example.test', 'A')).cached, true);
    assert.equal((await r.query('host.example.test', 'MX')).cached, true);
    assert.equal(server.seen.length, 2);
    now += 31_000;
    assert.equal((await r.query('nope.example.test', 'A')).cached, false);
  });

  it('does not cache a negative answer without SOA', async () => {
    const bare = await startTestDnsServer({ zone: ZONE, negativeTtl: -1 });
    try {
      const r = new DnsResolver({ servers: [bare.address], timeoutMs: 300, retries: 0 });
      await r.query('nope.example.test', 'A');
      assert.equal((await r.query('nope.example.test', 'A')).cached, false);
      assert.equal(bare.seen.length, 2);
    } finally {
      await bare.stop();
    }
  });

  it('bounds the cache size', async () => {
    const r = make({ cacheEntries: 2 });
    await r.query('host.example.test', 'A');
    await r.query('host.example.test', 'AAAA');
    await r.query('mx.example.test', 'MX');
    assert.equal((await r.query('host.example.test', 'A')).cached, false); // evicted (least recently used)
    assert.equal((await r.query('mx.example.test', 'MX')).cached, true);
  });

  it('shares one wire query among identical questions in flight', async () => {
    server.delayMs = 50;
    const r = make();
    const all = await Promise.all(Array.from({ length: 10 }, () => r.query('host.example.test', 'A')));
    assert.equal(all.length, 10);
    assert.equal(server.seen.length, 1);
    assert.equal(r.stats.shared, 9);
  });

  it('caps the queries on the wire at `concurrency`', async () => {
    server.delayMs = 60;
    server.maxPending = 0;
    const r = make({ concurrency: 3 });
    const names = Array.from({ length: 10 }, (_, i) => `n${i}.example.test`);
    const res = await Promise.all(names.map((n) => r.query(n, 'A')));
    assert.equal(res.length, 10);
    assert.ok(res.every((a) => a.rcode === 'NXDOMAIN'));
    assert.equal(server.seen.length, 10);
    assert.equal(server.maxPending, 3);
  });

  it('bounds the queue behind the concurrency cap (EQUEUEFULL)', async () => {
    server.delayMs = 50;
    const r = make({ concurrency: 1, maxQueued: 2 });
    const res = await Promise.allSettled(['q1', 'q2', 'q3', 'q4'].map((n) => r.query(`${n}.example.test`, 'A')));
    assert.deepEqual(
      res.map((x) => (x.status === 'fulfilled' ? x.value.rcode : (x.reason as DnsError).code)),
      ['NXDOMAIN', 'NXDOMAIN', 'NXDOMAIN', 'EQUEUEFULL'],
    );
  });

  it('retries over TCP when the UDP answer is truncated', async () => {
    server.truncateUdp = true;
    const r = make();
    const a = await r.query('host.example.test', 'A');
    assert.equal(a.records.length, 2);
    assert.deepEqual(
      server.seen.map((s) => s.transport),
      ['udp', 'tcp'],
    );
    assert.equal(r.stats.tcpQueries, 1);
  });

  it('a long TXT record that does not fit UDP comes over TCP, strings intact', async () => {
    const r = make({ edns: false });
    const t = await r.query('long.example.test', 'TXT');
    const parts = t.records[0] ?? [];
    assert.deepEqual(
      parts.map((b) => b.length),
      [255, 255, 190],
    );
    assert.deepEqual(
      server.seen.map((s) => s.transport),
      ['udp', 'tcp'],
    );
  });

  it('times out, retrying `retries` times, and reports ETIMEOUT', async () => {
    const r = new DnsResolver({ servers: [silent.address], timeoutMs: 100, retries: 2 });
    const t0 = Date.now();
    await assert.rejects(r.query('host.example.test', 'A'), (e: unknown) => e instanceof DnsError && e.code === 'ETIMEOUT');
    assert.ok(Date.now() - t0 >= 290);
    assert.equal(silent.seen.length, 3);
    // failures are not cached
    await assert.rejects(r.query('host.example.test', 'A'));
    assert.equal(silent.seen.length, 6);
  });

  it('moves on to the next server after a timeout', async () => {
    const r = new DnsResolver({ servers: [silent.address, server.address], timeoutMs: 100, retries: 1 });
    const a = await r.query('host.example.test', 'A');
    assert.equal(a.records.length, 2);
    assert.equal(silent.seen.length, 1);
  });

  it('reports SERVFAIL as ESERVFAIL', async () => {
    server.servfail = true;
    const r = make();
    await assert.rejects(r.query('host.example.test', 'A'), (e: unknown) => e instanceof DnsError && e.code === 'ESERVFAIL');
  });

  it('accepts odd labels SPF macros produce, refuses names that cannot go on the wire', async () => {
    const r = make();
    const a = await r.query('odd label%_=.example.test', 'A');
    assert.deepEqual(a.records, ['192.0.2.77']);
    await assert.rejects(r.query('x'.repeat(64) + '.example.test', 'A'), (e: unknown) => e instanceof DnsError && e.code === 'EBADNAME');
    await assert.rejects(r.query('a..example.test', 'A'), (e: unknown) => e instanceof DnsError && e.code === 'EBADNAME');
    await assert.rejects(r.query(('a'.repeat(60) + '.').repeat(5) + 'test', 'A'), (e: unknown) => e instanceof DnsError && e.code === 'EBADNAME');
    assert.equal(server.seen.length, 1);
  });

  it('uses random query ids and source ports', async () => {
    const r = make({ cacheEntries: 0 });
    for (let i = 0; i < 8; i++) await r.query('host.example.test', 'A');
    assert.ok(new Set(server.seen.map((s) => s.id)).size >= 7);
    assert.ok(new Set(server.seen.map((s) => s.port)).size >= 7);
  });

  it('parses resolv.conf and builds reverse names', () => {
    assert.deepEqual(parseResolvConf('# c\nsearch x\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver bogus\n'), ['10.0.0.1', 'fe80::1']);
    assert.equal(reverseAddress('127.0.0.2'), '2.0.0.127');
    assert.equal(reverseAddress('::ffff:192.0.2.3'), '3.2.0.192');
    assert.equal(reverseAddress('2001:db8::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2');
    assert.equal(reverseAddress('nope'), undefined);
  });
});

describe('dns-resolver against hostile answers', function () {
  it('ignores garbage, wrong ids, wrong questions and other senders; takes the matching answer', async () => {
    const { createSocket } = await import('node:dgram');
    const dnsPacket = (await import('dns-packet')).default;
    const srv = createSocket('udp4');
    const other = createSocket('udp4');
    await new Promise<void>((r) => srv.bind(0, '127.0.0.1', () => r()));
    await new Promise<void>((r) => other.bind(0, '127.0.0.1', () => r()));
    srv.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const question = q.questions?.[0];
      if (!question) return;
      const answer = (id: number, name: string, data: string) =>
        dnsPacket.encode({ type: 'response', id, flags: 0, questions: [{ ...question, name }], answers: [{ type: 'A', name, ttl: 60, data }] });
      const id = q.id ?? 0;
      srv.send(Buffer.from('garbage that is not DNS'), rinfo.port, rinfo.address);
      srv.send(answer((id + 1) % 65536, question.name, '10.6.6.6'), rinfo.port, rinfo.address); // wrong id
      srv.send(answer(id, 'evil.example.test', '10.6.6.7'), rinfo.port, rinfo.address); // wrong question
      other.send(answer(id, question.name, '10.6.6.8'), rinfo.port, rinfo.address); // right id, wrong source port
      setTimeout(() => srv.send(answer(id, question.name, '192.0.2.200'), rinfo.port, rinfo.address), 20);
    });
    try {
      const r = new DnsResolver({ servers: [`127.0.0.1:${srv.address().port}`], timeoutMs: 1000, retries: 0 });
      const a = await r.query('victim.example.test', 'A');
      assert.deepEqual(a.records, ['192.0.2.200']);
    } finally {
      srv.close();
      other.close();
    }
  });

  it('name checks never throw and accepted names round-trip through the wire format', async () => {
    const fc = (await import('fast-check')).default;
    const dnsPacket = (await import('dns-packet')).default;
    const { nameProblem } = await import('../../lib/policy/dns-name.js');
    const label = fc.string({ unit: fc.constantFrom(...'abcXYZ09-_ %=+!~'.split('')), minLength: 0, maxLength: 70 });
    fc.assert(
      fc.property(fc.array(label, { minLength: 1, maxLength: 6 }), (labels) => {
        const name = labels.join('.');
        const p = nameProblem(name);
        if (p !== undefined) return true;
        const wire = name.endsWith('.') ? name.slice(0, -1) : name; // the resolver sends names without the root dot
        const buf = dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: wire }] });
        assert.ok(buf.length <= 512);
        assert.equal(dnsPacket.decode(buf).questions?.[0]?.name, wire);
        return true;
      }),
      { numRuns: 500 },
    );
  });
});
