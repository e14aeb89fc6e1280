import { strict as assert } from 'node:assert';
import { DnsResolver } from '../../lib/policy/dns-resolver.js';
import { DnsLists, dnsListZoneProblems } from '../../lib/policy/dnsbl.js';
import type { Logger } from '../../lib/core/logger.js';
import { startTestDnsServer, type TestDnsServer } from '../helpers/dns-server.js';

interface LogLine {
  level: string;
  obj: object;
  msg?: string;
}
function recordingLogger(lines: LogLine[]): Logger {
  const mk = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, ...(msg !== undefined ? { msg } : {}) });
  const l: Logger = { debug: mk('debug'), info: mk('info'), warn: mk('warn'), error: mk('error'), child: () => l, isLevelEnabled: () => true };
  return l;
}

const ZONE = {
  // 192.0.2.99 listed with two codes and a reason
  '99.2.0.192.bl.test': [
    { type: 'A', data: '127.0.0.2' },
    { type: 'A', data: '127.0.0.4' },
    { type: 'TXT', data: 'Listed: see https://bl.test/q?ip=192.0.2.99' },
  ],
  // a code outside the configured "listed" set
  '98.2.0.192.bl.test': [{ type: 'A', data: '127.0.0.20' }],
  // the list refuses us
  '97.2.0.192.bl.test': [{ type: 'A', data: '127.255.255.254' }],
  // a hijacked/wildcard answer outside 127/8
  '96.2.0.192.bl.test': [{ type: 'A', data: '198.18.0.1' }],
  // 2001:db8::1 listed
  '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test': [{ type: 'A', data: '127.0.0.3' }],
  // whitelist
  '10.2.0.192.wl.test': [{ type: 'A', data: '127.0.10.1' }],
  // RHSBL
  'spammer.example.rhs.test': [
    { type: 'A', data: '127.0.1.2' },
    { type: 'TXT', data: ['spam ', 'domain'] },
  ],
  '95.2.0.192.bl.test': [{ type: 'SERVFAIL' }],
} as const;

describe('dnsbl: DNS lists against spec/helpers/dns-server', function () {
  let server: TestDnsServer;
  let lists: DnsLists;
  const log: LogLine[] = [];

  before(async () => {
    server = await startTestDnsServer({ zone: ZONE });
    const resolver = new DnsResolver({ servers: [server.address], timeoutMs: 200, retries: 0 });
    lists = new DnsLists({
      resolver,
      logger: recordingLogger(log),
      zones: [
        { name: 'bl', zone: 'bl.test', kind: 'ip', listed: ['127.0.0.2-127.0.0.11'] },
        { name: 'wl', zone: 'wl.test', kind: 'ip', listed: ['127.0.10.0/24'] },
        { name: 'rhs', zone: 'rhs.test', kind: 'domain' },
        { name: 'noreason', zone: 'bl.test', kind: 'ip', reason: false },
      ],
    });
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(() => {
    log.length = 0;
    server.seen.length = 0;
    server.silent = false;
  });

  it('reports a listed IPv4 address with its codes and TXT reason', async () => {
    const o = await lists.lookupAddress('bl', '192.0.2.99');
    assert.deepEqual(o, { zone: 'bl', listed: true, codes: ['127.0.0.2', '127.0.0.4'], reason: 'Listed: see https://bl.test/q?ip=192.0.2.99' });
    assert.ok(log.some((l) => l.level === 'debug' && JSON.stringify(l.obj).includes('"listed":true') && JSON.stringify(l.obj).includes('"ms"')));
  });

  it('does not fetch the TXT reason when not listed, nor when turned off', async () => {
    assert.deepEqual(await lists.lookupAddress('bl', '192.0.2.1'), { zone: 'bl', listed: false, codes: [] });
    assert.deepEqual(await lists.lookupAddress('noreason', '192.0.2.99'), { zone: 'noreason', listed: true, codes: ['127.0.0.2', '127.0.0.4'] });
    assert.deepEqual(
      server.seen.map((s) => s.type),
      ['A'],
    ); // 192.0.2.99 A is cached from the first test; no TXT asked for either
  });

  it('an answer outside the configured codes is not a listing', async () => {
    assert.deepEqual(await lists.lookupAddress('bl', '192.0.2.98'), { zone: 'bl', listed: false, codes: [] });
  });

  it('an error code means the list refused us: an error, not a listing', async () => {
    const o = await lists.lookupAddress('bl', '192.0.2.97');
    assert.equal(o.listed, false);
    assert.match(o.error ?? '', /refused.*127\.255\.255\.254/);
    assert.ok(log.some((l) => l.level === 'warn'));
  });

  it('ignores and logs answers outside 127.0.0.0/8', async () => {
    const o = await lists.lookupAddress('bl', '192.0.2.96');
    assert.deepEqual(o, { zone: 'bl', listed: false, codes: [] });
    assert.ok(log.some((l) => l.level === 'warn' && JSON.stringify(l.obj).includes('198.18.0.1')));
  });

  it('looks IPv6 addresses up in nibble form', async () => {
    assert.deepEqual(await lists.lookupAddress('bl', '2001:db8::1'), { zone: 'bl', listed: true, codes: ['127.0.0.3'] });
    assert.equal((await lists.lookupAddress('bl', '::ffff:192.0.2.99')).listed, true); // mapped IPv4 as IPv4
  });

  it('whitelists answer like blacklists', async () => {
    assert.equal((await lists.lookupAddress('wl', '192.0.2.10')).listed, true);
    assert.equal((await lists.lookupAddress('wl', '192.0.2.11')).listed, false);
  });

  it('RHSBL: looks the domain up, joins a multi-string TXT reason', async () => {
    assert.deepEqual(await lists.lookupDomain('rhs', 'Spammer.Example.'), { zone: 'rhs', listed: true, codes: ['127.0.1.2'], reason: 'spam domain' });
    assert.equal((await lists.lookupDomain('rhs', 'clean.example')).listed, false);
    assert.equal((await lists.lookupDomain('rhs', 'a..b')).error, 'not a valid domain');
  });

  it('reports DNS failures (SERVFAIL, timeout) as errors, never as listed', async () => {
    const sf = await lists.lookupAddress('bl', '192.0.2.95');
    assert.deepEqual(sf, { zone: 'bl', listed: false, codes: [], error: 'DNS ESERVFAIL' });
    server.silent = true;
    const to = await lists.lookupAddress('bl', '192.0.2.94');
    assert.deepEqual(to, { zone: 'bl', listed: false, codes: [], error: 'DNS ETIMEOUT' });
  });

  it('refuses the wrong kind, unknown lists and non-addresses', async () => {
    assert.equal((await lists.lookupDomain('bl', 'x.example')).error, 'not a domain list');
    assert.equal((await lists.lookupAddress('rhs', '192.0.2.1')).error, 'not an address list');
    assert.equal((await lists.lookupAddress('nope', '192.0.2.1')).error, 'unknown list');
    assert.equal((await lists.lookupAddress('bl', '999.1.1.1')).error, 'not an IP address');
    assert.deepEqual([...lists.zones].sort(), ['bl', 'noreason', 'rhs', 'wl']);
  });

  it('validates zone options precisely', () => {
    assert.deepEqual(dnsListZoneProblems({ name: 'ok', zone: 'zen.example', kind: 'ip', listed: ['127.0.0.2-127.0.0.11', '127.0.1.0/24', '127.0.0.99'] }), []);
    const p = dnsListZoneProblems({ name: 'bad name', zone: 'nodot', kind: 'ip', listed: ['127.0.0.9-127.0.0.2', '1.2.3.4/40'], errors: ['x'] });
    assert.equal(p.length, 4);
    assert.match(p.join('\n'), /backwards/);
    assert.throws(() => new DnsLists({ resolver: new DnsResolver({ servers: ['127.0.0.1:9'] }), zones: [{ name: 'a', zone: 'a.test', kind: 'ip', errors: ['nope'] }] }), /errors: not an IPv4/);
  });
});
