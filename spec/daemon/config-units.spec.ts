import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatHostPort, formatListen, parseCidr, parseDuration, parseHostPort, parseListen, parseSize } from '../../lib/daemon/config-units.js';
import { editDistance, nearest as nearestWord } from '../../lib/core/edit-distance.js';
import { CONFIG_TOLERANCE } from '../../lib/daemon/config-schema.js';

const nearest = (word: string, candidates: readonly string[]): string | undefined => nearestWord(word, candidates, { tolerance: CONFIG_TOLERANCE });

describe('config units', () => {
  it('parses durations with units, combined, and refuses the rest', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('2d'), 172_800_000);
    assert.equal(parseDuration('0'), 0);
    for (const bad of ['', '30', 's', '5 m', '1y', '-1s', '1h 30m', '400d']) assert.equal(typeof parseDuration(bad), 'string', bad);
  });

  it('parses sizes in binary units', () => {
    assert.equal(parseSize('512'), 512);
    assert.equal(parseSize('10KB'), 10 * 1024);
    assert.equal(parseSize('10MB'), 10 * 1024 * 1024);
    assert.equal(parseSize('1gb'), 1024 ** 3);
    assert.equal(parseSize('1.5K'), 1536);
    for (const bad of ['', 'MB', '10 parsecs', '-1', '1TB']) assert.equal(typeof parseSize(bad), 'string', bad);
  });

  it('parses host:port, [v6]:port and refuses bare v6 and bad ports', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:25'), { host: '127.0.0.1', port: 25 });
    assert.deepEqual(parseHostPort('[::1]:10025'), { host: '::1', port: 10025 });
    assert.deepEqual(parseHostPort('mx.example.org:587'), { host: 'mx.example.org', port: 587 });
    assert.equal(parseHostPort('::1:25'), '"::1:25": write an IPv6 address in brackets, e.g. [::1]:25');
    assert.equal(parseHostPort('127.0.0.1:0'), 'port 0 is out of range (1..65535)');
    assert.deepEqual(parseHostPort('127.0.0.1:0', true), { host: '127.0.0.1', port: 0 });
    assert.equal(typeof parseHostPort('bad host:25'), 'string');
  });

  it('parses listen addresses in every accepted form', () => {
    assert.deepEqual(parseListen('127.0.0.1:10025'), { kind: 'tcp', host: '127.0.0.1', port: 10025 });
    assert.deepEqual(parseListen('inet:10027@127.0.0.1'), { kind: 'tcp', host: '127.0.0.1', port: 10027 });
    assert.deepEqual(parseListen('inet6:10027@::1'), { kind: 'tcp', host: '::1', port: 10027 });
    assert.deepEqual(parseListen('unix:/run/sluice/m.sock'), { kind: 'unix', path: '/run/sluice/m.sock' });
    assert.deepEqual(parseListen('/run/sluice/m.sock'), { kind: 'unix', path: '/run/sluice/m.sock' });
    assert.match(parseListen(`unix:/${'x'.repeat(120)}`) as string, /longer than 100 bytes/);
  });

  it('round-trips host:port and listen addresses', () => {
    const host = fc.oneof(fc.ipV4(), fc.ipV6());
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), (h, port) => {
        const text = formatHostPort({ host: h, port });
        assert.deepEqual(parseHostPort(text), { host: h, port });
        assert.deepEqual(parseListen(formatListen({ kind: 'tcp', host: h, port })), { kind: 'tcp', host: h, port });
      }),
    );
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string(), (t) => {
        for (const f of [parseDuration, parseSize, (x: string) => parseHostPort(x), parseListen, parseCidr]) {
          const r = f(t);
          assert.ok(r !== undefined);
        }
      }),
    );
  });

  it('parses CIDR prefixes and bare addresses', () => {
    assert.deepEqual(parseCidr('192.0.2.0/24'), { address: '192.0.2.0', prefix: 24, family: 4 });
    assert.deepEqual(parseCidr('2001:db8::/32'), { address: '2001:db8::', prefix: 32, family: 6 });
    assert.deepEqual(parseCidr('192.0.2.7'), { address: '192.0.2.7', prefix: 32, family: 4 });
    assert.equal(parseCidr('192.0.2.0/33'), '"/33" is not a prefix length for IPv4 (0..32)');
    assert.equal(parseCidr('example.org'), '"example.org" is not an IP address');
  });

  it('suggests only near words', () => {
    assert.equal(editDistance('levle', 'level'), 2);
    assert.equal(nearest('levle', ['level', 'format']), 'level');
    assert.equal(nearest('zzzzzz', ['level', 'format']), undefined);
    assert.equal(nearest('tmeout', ['timeout', 'retries']), 'timeout');
  });
});
