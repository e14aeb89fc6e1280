/**
 * The resolver, DNS lists and SPF against a real authoritative server from Debian (NSD) on loopback,
 * with a zone file written by the test; plus a silent server for timeouts.
 */
import { strict as assert } from 'node:assert';
import { createSocket, type Socket } from 'node:dgram';
import { DnsResolver } from '../../lib/policy/dns-resolver.js';
import { DnsLists } from '../../lib/policy/dnsbl.js';
import { SpfChecker } from '../../lib/policy/spf-checker.js';
import { reverseAddress } from '../../lib/policy/dns-name.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { nsdAvailable, startNsd, type NsdInstance } from '../helpers/nsd.js';

/** A TXT record in zone-file syntax, split into quoted strings of at most 200 bytes. */
function txt(value: string): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 200) parts.push(`"${value.slice(i, i + 200)}"`);
  return `( ${parts.join(' ')} )`;
}

const bigSpf = 'v=spf1 ' + Array.from({ length: 110 }, (_, i) => `ip4:10.${Math.floor(i / 250)}.${i % 250}.1`).join(' ') + ' ip4:203.0.113.7 -all';

const ZONE = `$ORIGIN sluice.test.
$TTL 300
@ IN SOA ns.sluice.test. hostmaster.sluice.test. 1 3600 600 86400 60
@ IN NS ns
ns IN A 127.0.0.1
2.0.0.127.bl IN A 127.0.0.2
2.0.0.127.bl IN TXT "Test listing: see https://bl.sluice.test/"
98.2.0.192.bl IN A 127.255.255.254
${reverseAddress('2001:db8::1')}.bl IN A 127.0.0.3
bad.example.rhs IN A 127.0.1.2
bad.example.rhs IN TXT "bad domain"
spf IN TXT ( "v=spf1 ip4:192.0.2.0/24 " "ip4:198.51.100.0/24" " -all" )
inc IN TXT "v=spf1 include:spf.sluice.test exp=why.sluice.test -all"
why IN TXT "%{i} is not one of %{d}'s senders"
big IN TXT ${txt(bigSpf)}
`;

describe('DNS against a real authoritative server (NSD)', function () {
  this.timeout(20_000);
  let nsd: NsdInstance | undefined;
  let silent: Socket | undefined;
  let silentPort = 0;
  let resolver: DnsResolver;
  let lists: DnsLists;

  before(async function () {
    requirePeer(this, nsdAvailable(), 'nsd (Debian package nsd)');
    nsd = await startNsd([{ origin: 'sluice.test', text: ZONE }]);
    silent = createSocket('udp4');
    await new Promise<void>((r) => silent?.bind(0, '127.0.0.1', () => r()));
    silentPort = silent.address().port;
    resolver = new DnsResolver({ servers: [nsd.address], timeoutMs: 1000, retries: 1 });
    lists = new DnsLists({
      resolver,
      zones: [
        { name: 'bl', zone: 'bl.sluice.test', kind: 'ip', listed: ['127.0.0.2-127.0.0.11'] },
        { name: 'rhs', zone: 'rhs.sluice.test', kind: 'domain', listed: ['127.0.1.0/24'] },
      ],
    });
  });
  after(async () => {
    await nsd?.stop();
    silent?.close();
  });

  it('DNSBL: listed, with its TXT reason', async () => {
    assert.deepEqual(await lists.lookupAddress('bl', '127.0.0.2'), {
      zone: 'bl',
      listed: true,
      codes: ['127.0.0.2'],
      reason: 'Test listing: see https://bl.sluice.test/',
    });
  });

  it('DNSBL: unlisted (NXDOMAIN)', async () => {
    assert.deepEqual(await lists.lookupAddress('bl', '192.0.2.1'), { zone: 'bl', listed: false, codes: [] });
  });

  it('DNSBL: an error code is an error', async () => {
    const o = await lists.lookupAddress('bl', '192.0.2.98');
    assert.equal(o.listed, false);
    assert.match(o.error ?? '', /refused/);
  });

  it('DNSBL: IPv6 address in nibble form', async () => {
    assert.deepEqual(await lists.lookupAddress('bl', '2001:db8::1'), { zone: 'bl', listed: true, codes: ['127.0.0.3'] });
  });

  it('RHSBL: the sender domain', async () => {
    assert.deepEqual(await lists.lookupDomain('rhs', 'bad.example'), { zone: 'rhs', listed: true, codes: ['127.0.1.2'], reason: 'bad domain' });
    assert.equal((await lists.lookupDomain('rhs', 'good.example')).listed, false);
  });

  it('a silent server: timeout after the retries, reported as an error', async () => {
    const r = new DnsResolver({ servers: [`127.0.0.1:${silentPort}`], timeoutMs: 150, retries: 1 });
    const l = new DnsLists({ resolver: r, zones: [{ name: 'bl', zone: 'bl.sluice.test', kind: 'ip' }] });
    const t0 = Date.now();
    assert.deepEqual(await l.lookupAddress('bl', '127.0.0.2'), { zone: 'bl', listed: false, codes: [], error: 'DNS ETIMEOUT' });
    assert.ok(Date.now() - t0 >= 280);
    const spf = new SpfChecker({ resolver: r });
    assert.equal((await spf.check({ ip: '192.0.2.1', helo: 'h.example', sender: 'a@spf.sluice.test' })).result, 'temperror');
  });

  it('SPF: a TXT record split into several strings, through include, with exp=', async () => {
    const spf = new SpfChecker({ resolver, hostname: 'mx.sluice.test' });
    const pass = await spf.check({ ip: '198.51.100.5', helo: 'h.example', sender: 'someone@inc.sluice.test' });
    assert.equal(pass.result, 'pass');
    assert.equal(pass.identity, 'mailfrom');
    assert.equal(pass.domain, 'inc.sluice.test');
    const fail = await spf.check({ ip: '203.0.113.9', helo: 'h.example', sender: 'someone@inc.sluice.test' });
    assert.equal(fail.result, 'fail');
    assert.equal(fail.explanation, "203.0.113.9 is not one of inc.sluice.test's senders");
    const helo = await spf.check({ ip: '192.0.2.7', helo: 'spf.sluice.test', sender: '' });
    assert.deepEqual([helo.result, helo.identity, helo.domain], ['pass', 'helo', 'spf.sluice.test']);
  });

  it('truncation: a record too large for UDP is fetched over TCP', async () => {
    const r = new DnsResolver({ servers: [nsd?.address ?? ''], timeoutMs: 1000 });
    const ans = await r.query('big.sluice.test', 'TXT');
    assert.equal(ans.records[0]?.map((b) => b.toString('latin1')).join(''), bigSpf);
    assert.ok(bigSpf.length > 1232);
    assert.equal(r.stats.tcpQueries, 1);
    const spf = new SpfChecker({ resolver: new DnsResolver({ servers: [nsd?.address ?? ''] }) });
    assert.equal((await spf.check({ ip: '203.0.113.7', helo: 'h.example', sender: 'x@big.sluice.test' })).result, 'pass');
    assert.equal((await spf.check({ ip: '203.0.113.8', helo: 'h.example', sender: 'x@big.sluice.test' })).result, 'fail');
  });
});
