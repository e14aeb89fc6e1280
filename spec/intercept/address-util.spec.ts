import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { isIPv6 } from 'node:net';
import {
  bytesToIp,
  cidrContains,
  endpointEquals,
  formatEndpoint,
  ipToBytes,
  normalizeIp,
  parseCidr,
} from '../../lib/intercept/address-util.js';

describe('intercept address helpers', () => {
  it('normalises IPv4-mapped IPv6 to IPv4 and lower-cases IPv6', () => {
    assert.equal(normalizeIp('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normalizeIp('::FFFF:192.0.2.1'), '192.0.2.1');
    assert.equal(normalizeIp('2001:DB8::1'), '2001:db8::1');
    assert.equal(normalizeIp('::ffff:c000:201'), '::ffff:c000:201');
  });

  it('formats endpoints with brackets for IPv6', () => {
    assert.equal(formatEndpoint({ ip: '::1', port: 25 }), '[::1]:25');
    assert.equal(formatEndpoint({ ip: '127.0.0.1', port: 25 }), '127.0.0.1:25');
  });

  it('converts addresses to bytes and back canonically (RFC 5952)', () => {
    assert.equal(bytesToIp(ipToBytes('2001:0db8:0000:0000:0001:0000:0000:0001') ?? new Uint8Array()), '2001:db8::1:0:0:1');
    assert.equal(bytesToIp(ipToBytes('::') ?? new Uint8Array()), '::');
    assert.equal(bytesToIp(ipToBytes('1:0:2:0:3:0:4:0') ?? new Uint8Array()), '1:0:2:0:3:0:4:0');
    assert.equal(bytesToIp(ipToBytes('::ffff:10.1.2.3') ?? new Uint8Array()), '10.1.2.3');
    assert.equal(ipToBytes('nope'), undefined);
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const b = ipToBytes(ip);
        assert.ok(b);
        const back = bytesToIp(b);
        const again = ipToBytes(back);
        assert.ok(again);
        assert.deepEqual(Buffer.from(again), b.length === 4 ? Buffer.from(again) : Buffer.from(b));
        if (b.length === 16) assert.ok(isIPv6(back));
      }),
    );
  });

  it('matches CIDRs for both families', () => {
    const c = (s: string) => {
      const r = parseCidr(s);
      assert.ok(r, s);
      return r;
    };
    assert.ok(cidrContains(c('127.0.0.0/8'), '127.1.2.3'));
    assert.ok(cidrContains(c('127.0.0.0/8'), '::ffff:127.0.0.9'));
    assert.ok(!cidrContains(c('127.0.0.0/8'), '128.0.0.1'));
    assert.ok(cidrContains(c('10.0.0.0/31'), '10.0.0.1'));
    assert.ok(!cidrContains(c('10.0.0.0/31'), '10.0.0.2'));
    assert.ok(cidrContains(c('::1/128'), '::1'));
    assert.ok(!cidrContains(c('::1/128'), '127.0.0.1'));
    assert.ok(cidrContains(c('2001:db8::/32'), '2001:db8:ffff::1'));
    assert.ok(cidrContains(c('0.0.0.0/0'), '8.8.8.8'));
    assert.ok(cidrContains(c('::ffff:10.0.0.0/104'), '10.9.9.9'));
    assert.ok(cidrContains(c('192.0.2.5'), '192.0.2.5'));
    for (const bad of ['10.0.0.0/33', '::/129', 'x/8', '10.0.0.0/', '10.0.0.0/-1']) assert.equal(parseCidr(bad), undefined, bad);
  });

  it('compares endpoints across notations', () => {
    assert.ok(endpointEquals({ ip: '::ffff:127.0.0.1', port: 25 }, { ip: '127.0.0.1', port: 25 }));
    assert.ok(endpointEquals({ ip: '2001:DB8::1', port: 25 }, { ip: '2001:db8:0::1', port: 25 }));
    assert.ok(!endpointEquals({ ip: '127.0.0.1', port: 25 }, { ip: '127.0.0.1', port: 26 }));
  });
});
