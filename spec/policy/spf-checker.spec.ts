import { strict as assert } from 'node:assert';
import { DnsResolver } from '../../lib/policy/dns-resolver.js';
import { SpfChecker } from '../../lib/policy/spf-checker.js';
import { spfRecordProblem } from '../../lib/policy/spf-record-syntax.js';
import type { Logger } from '../../lib/core/logger.js';
import { startTestDnsServer, type TestDnsServer } from '../helpers/dns-server.js';

describe('spf-checker', function () {
  let server: TestDnsServer;
  let resolver: DnsResolver;
  const lines: object[] = [];
  const logger: Logger = {
    debug: (o) => void lines.push(o),
    info: () => undefined,
    warn: () => undefined,
    error: () => undefined,
    child: () => logger,
    isLevelEnabled: () => true,
  };

  before(async () => {
    server = await startTestDnsServer({
      zone: {
        'ok.test': [{ type: 'TXT', data: 'v=spf1 a:mail.ok.test include:other.test -all' }],
        'mail.ok.test': [{ type: 'A', data: '192.0.2.10' }],
        'other.test': [{ type: 'TXT', data: 'v=spf1 ip6:2001:db8::/32 ~all' }],
        'slow.test': [{ type: 'TXT', data: 'v=spf1 a:hang.slow.test -all' }],
        'hang.slow.test': [{ type: 'TIMEOUT' }],
      },
    });
    resolver = new DnsResolver({ servers: [server.address], timeoutMs: 2000, retries: 0 });
  });
  after(async () => {
    await server.stop();
  });

  it('checks the MAIL FROM identity, IPv4 and IPv6, and counts lookups', async () => {
    const spf = new SpfChecker({ resolver, logger });
    const p = await spf.check({ ip: '192.0.2.10', helo: 'x.test', sender: 'a@ok.test' });
    assert.deepEqual({ ...p, explanation: undefined }, { result: 'pass', identity: 'mailfrom', domain: 'ok.test', explanation: undefined, lookups: 1 });
    const v6 = await spf.check({ ip: '2001:db8::5', helo: 'x.test', sender: 'a@ok.test' });
    assert.equal(v6.result, 'pass');
    assert.equal(v6.lookups, 2);
    const f = await spf.check({ ip: '::ffff:198.51.100.1', helo: 'x.test', sender: 'a@ok.test' });
    assert.equal(f.result, 'fail');
    assert.ok(lines.some((l) => JSON.stringify(l).includes('"result":"fail"') && JSON.stringify(l).includes('"ms"')));
  });

  it('checks the HELO identity for the null sender', async () => {
    const spf = new SpfChecker({ resolver });
    const h = await spf.check({ ip: '192.0.2.10', helo: 'ok.test', sender: '' });
    assert.deepEqual([h.result, h.identity, h.domain], ['pass', 'helo', 'ok.test']);
  });

  it('bounds the whole check in time (temperror)', async () => {
    const spf = new SpfChecker({ resolver, timeoutMs: 200 });
    const t0 = Date.now();
    const r = await spf.check({ ip: '192.0.2.1', helo: 'x.test', sender: 'a@slow.test' });
    assert.equal(r.result, 'temperror');
    assert.ok(Date.now() - t0 < 1500);
  });

  it('a client address that is not an IP is a permerror', async () => {
    const r = await new SpfChecker({ resolver }).check({ ip: 'unix:socket', helo: 'x.test', sender: 'a@ok.test' });
    assert.equal(r.result, 'permerror');
  });

  it('record syntax: errors anywhere are found, valid records pass', () => {
    assert.equal(spfRecordProblem('v=spf1 a mx/24//64 ptr:%{d} include:_spf.%{d2} ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{ir}.x.test -all exp=e.%{d} foo=bar'), undefined);
    assert.match(spfRecordProblem('v=spf1 -all ip6') ?? '', /ip6/);
    assert.match(spfRecordProblem('v=spf1 -all exp=a.test exp=b.test') ?? '', /twice/);
    assert.match(spfRecordProblem('v=spf1 a:%{r}.test') ?? '', /macro/);
    assert.match(spfRecordProblem('v=spf1 ip4:192.0.2.1/33') ?? '', /cidr/);
  });
});
