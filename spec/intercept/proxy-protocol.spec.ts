import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import {
  crc32c,
  parseProxyHeader,
  PP1_MAX_LENGTH,
  PP2_SIGNATURE,
  serializeProxyV1,
  serializeProxyV2,
  type ProxyParseResult,
} from '../../lib/intercept/proxy-protocol.js';

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

function header(r: ProxyParseResult) {
  assert.equal(r.kind, 'header', r.kind === 'error' ? r.error.message : 'incomplete');
  if (r.kind !== 'header') throw new Error('unreachable');
  return r;
}
function error(r: ProxyParseResult): string {
  assert.equal(r.kind, 'error');
  if (r.kind !== 'error') throw new Error('unreachable');
  assert.equal(r.error.name, 'ProtocolError');
  return r.error.message;
}

describe('PROXY protocol v1 codec', () => {
  it('parses TCP4 and reports the header length (bytes after it are the session)', () => {
    const line = 'PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n';
    const r = header(parseProxyHeader(ascii(line + 'EHLO x\r\n')));
    assert.equal(r.length, line.length);
    assert.deepEqual(r.header.source, { ip: '192.0.2.10', port: 56324 });
    assert.deepEqual(r.header.destination, { ip: '198.51.100.1', port: 25 });
    assert.equal(r.header.family, 'tcp4');
    assert.equal(r.header.version, 1);
  });

  it('parses TCP6, canonicalises, and maps ::ffff:a.b.c.d to IPv4', () => {
    const r = header(parseProxyHeader(ascii('PROXY TCP6 2001:DB8:0:0::1 ::ffff:192.0.2.7 1 65535\r\n')));
    assert.deepEqual(r.header.source, { ip: '2001:db8::1', port: 1 });
    assert.deepEqual(r.header.destination, { ip: '192.0.2.7', port: 65535 });
  });

  it('parses UNKNOWN (the listener refuses it later) with or without addresses', () => {
    assert.equal(header(parseProxyHeader(ascii('PROXY UNKNOWN\r\n'))).header.family, 'unknown');
    assert.equal(header(parseProxyHeader(ascii('PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n'))).length, 35);
  });

  it('the longest valid lines fit in 107 bytes', () => {
    const v6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const line = `PROXY TCP6 ${v6} ${v6} 65535 65535\r\n`;
    assert.equal(line.length, 104);
    header(parseProxyHeader(ascii(line)));
    assert.equal(`PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n`.length, 56);
  });

  it('says incomplete for every proper prefix of a valid line', () => {
    const line = ascii('PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n');
    for (let i = 0; i < line.length; i++) assert.equal(parseProxyHeader(line.subarray(0, i)).kind, 'incomplete', `prefix ${i}`);
  });

  const bad: [string, RegExp][] = [
    ['PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', /six/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', /six/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /six/],
    ['PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', /source address/],
    ['PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n', /source address/],
    ['PROXY TCP4 1.2.3.4 ::1 1 2\r\n', /destination address/],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', /source address/],
    ['PROXY TCP6 1::2::3 ::1 1 2\r\n', /source address/],
    ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /source address/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', /source port/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', /destination port/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', /source port/],
    ['PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', /bare LF/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX', /bare CR/],
    ['PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n', /non-printable/],
    ['PROXX TCP4', /signature/],
    ['EHLO foo\r\n', /not a PROXY/],
    ['PROXY UNKNOWNX\r\n', /protocol/],
  ];
  for (const [line, why] of bad) {
    it(`rejects ${JSON.stringify(line)}`, () => assert.match(error(parseProxyHeader(ascii(line))), why));
  }

  it('rejects a line without CRLF within 107 bytes', () => {
    const long = ascii('PROXY UNKNOWN ' + 'a'.repeat(200));
    assert.match(error(parseProxyHeader(long.subarray(0, PP1_MAX_LENGTH))), /107/);
    assert.equal(parseProxyHeader(long.subarray(0, PP1_MAX_LENGTH - 1)).kind, 'incomplete');
  });

  it('honours the versions option (no auto-detect of a disabled version)', () => {
    assert.match(error(parseProxyHeader(ascii('PROXY UNKNOWN\r\n'), { versions: [2] })), /not a PROXY/);
    const v2 = serializeProxyV2({ command: 'local', family: 'unspec' });
    assert.match(error(parseProxyHeader(v2, { versions: [1] })), /not a PROXY/);
  });
});

describe('PROXY protocol v2 codec', () => {
  const src = { ip: '192.0.2.10', port: 40000 };
  const dst = { ip: '198.51.100.1', port: 25 };

  it('parses the exact bytes of a TCP4 header with a NOOP TLV', () => {
    const bytes = Buffer.concat([
      Buffer.from(PP2_SIGNATURE),
      Buffer.from([0x21, 0x11, 0x00, 0x10]),
      Buffer.from([192, 0, 2, 10, 198, 51, 100, 1, 0x9c, 0x40, 0x00, 0x19]),
      Buffer.from([0x04, 0x00, 0x01, 0x00]),
      ascii('QUIT\r\n'),
    ]);
    const r = header(parseProxyHeader(bytes));
    assert.equal(r.length, 32);
    assert.deepEqual(r.header.source, src);
    assert.deepEqual(r.header.destination, dst);
    assert.equal(r.header.command, 'proxy');
    assert.deepEqual(r.header.tlvs.map((t) => t.type), [0x04]);
  });

  it('parses TCP6 and maps v4-mapped addresses', () => {
    const b = serializeProxyV2({ command: 'proxy', family: 'tcp6', source: { ip: '2001:db8::5', port: 1 }, destination: { ip: '192.0.2.1', port: 587 } });
    const r = header(parseProxyHeader(b));
    assert.equal(r.length, 16 + 36);
    assert.deepEqual(r.header.source, { ip: '2001:db8::5', port: 1 });
    assert.deepEqual(r.header.destination, { ip: '192.0.2.1', port: 587 });
  });

  it('LOCAL: accepts, ignores the family and skips len bytes', () => {
    const b = Buffer.from(serializeProxyV2({ command: 'local', family: 'unspec' }));
    assert.equal(b.length, 16);
    assert.equal(header(parseProxyHeader(b)).header.command, 'local');
    const withBody = Buffer.concat([Buffer.from(PP2_SIGNATURE), Buffer.from([0x20, 0x11, 0x00, 0x05, 1, 2, 3, 4, 5]), ascii('X')]);
    const r = header(parseProxyHeader(withBody));
    assert.equal(r.length, 21);
    assert.equal(r.header.source, undefined);
  });

  it('UNSPEC, UDP and UNIX are reported as such (not as TCP)', () => {
    const unspec = Buffer.concat([Buffer.from(PP2_SIGNATURE), Buffer.from([0x21, 0x00, 0x00, 0x00])]);
    assert.equal(header(parseProxyHeader(unspec)).header.family, 'unspec');
    const udp = Buffer.concat([Buffer.from(PP2_SIGNATURE), Buffer.from([0x21, 0x12, 0x00, 0x0c]), Buffer.alloc(12)]);
    assert.equal(header(parseProxyHeader(udp)).header.family, 'other');
    const unix = Buffer.concat([Buffer.from(PP2_SIGNATURE), Buffer.from([0x21, 0x31, 0x00, 0xd8]), Buffer.alloc(216)]);
    assert.equal(header(parseProxyHeader(unix)).header.family, 'other');
  });

  it('verifies a CRC32C TLV', () => {
    assert.equal(crc32c(ascii('123456789')), 0xe3069283);
    const good = serializeProxyV2({ command: 'proxy', family: 'tcp4', source: src, destination: dst }, true);
    header(parseProxyHeader(good));
    const bad = Buffer.from(good);
    bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 1;
    assert.match(error(parseProxyHeader(bad)), /CRC32C mismatch/);
    const tampered = Buffer.from(good);
    tampered[16] = 10;
    assert.match(error(parseProxyHeader(tampered)), /CRC32C mismatch/);
  });

  const v2 = (verCmd: number, fam: number, len: number, body: number[] = []): Buffer =>
    Buffer.concat([Buffer.from(PP2_SIGNATURE), Buffer.from([verCmd, fam, len >> 8, len & 0xff, ...body])]);
  const rejects: [string, Buffer, RegExp][] = [
    ['version 1', v2(0x11, 0x11, 12, Array<number>(12).fill(0)), /version/],
    ['version 3', v2(0x31, 0x11, 12, Array<number>(12).fill(0)), /version/],
    ['command 2', v2(0x22, 0x11, 12, Array<number>(12).fill(0)), /command/],
    ['family 4', v2(0x21, 0x41, 12, Array<number>(12).fill(0)), /family/],
    ['transport 3', v2(0x21, 0x13, 12, Array<number>(12).fill(0)), /family or transport/],
    ['len short for TCP4', v2(0x21, 0x11, 11, Array<number>(11).fill(0)), /shorter/],
    ['len short for TCP6', v2(0x21, 0x21, 12, Array<number>(12).fill(0)), /shorter/],
    ['truncated TLV', v2(0x21, 0x11, 14, [...Array<number>(12).fill(0), 4, 0]), /truncated/],
    ['overrunning TLV', v2(0x21, 0x11, 16, [...Array<number>(12).fill(0), 4, 0, 9, 0]), /overruns/],
    ['huge len', v2(0x21, 0x11, 0xffff), /longer than our limit/],
    ['signature typo', Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x55])]), /signature/],
  ];
  for (const [name, bytes, why] of rejects) {
    it(`rejects ${name}`, () => assert.match(error(parseProxyHeader(bytes)), why));
  }

  it('says incomplete for every proper prefix of a valid header', () => {
    const b = serializeProxyV2({ command: 'proxy', family: 'tcp6', source: { ip: '::1', port: 2 }, destination: { ip: '::2', port: 3 }, tlvs: [{ type: 5, value: new Uint8Array(20) }] }, true);
    for (let i = 0; i < b.length; i++) assert.equal(parseProxyHeader(b.subarray(0, i)).kind, 'incomplete', `prefix ${i}`);
    assert.equal(parseProxyHeader(b).kind, 'header');
  });
});

describe('PROXY protocol properties (fast-check)', () => {
  const ipv4 = fc.ipV4();
  const ipv6 = fc.ipV6().filter((s) => !s.includes('.') && !/^::ffff:/i.test(s));
  const port = fc.integer({ min: 0, max: 65535 });
  const tlv = fc.record({ type: fc.integer({ min: 0, max: 255 }).filter((t) => t !== 3), value: fc.uint8Array({ maxLength: 40 }) });

  it('never throws on arbitrary bytes, and never claims more bytes than it was given', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const r = parseProxyHeader(bytes);
        if (r.kind === 'header') assert.ok(r.length <= bytes.length);
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on mutated valid headers', () => {
    const valid = fc.oneof(
      fc.tuple(ipv4, ipv4, port, port).map(([a, b, p, q]) => serializeProxyV1({ family: 'tcp4', source: { ip: a, port: p }, destination: { ip: b, port: q } })),
      fc.tuple(ipv6, ipv6, port, port, fc.array(tlv, { maxLength: 3 })).map(([a, b, p, q, t]) =>
        serializeProxyV2({ command: 'proxy', family: 'tcp6', source: { ip: a, port: p }, destination: { ip: b, port: q }, tlvs: t }, true),
      ),
    );
    fc.assert(
      fc.property(valid, fc.nat(), fc.integer({ min: 0, max: 255 }), (b, at, val) => {
        const copy = Buffer.from(b);
        copy[at % copy.length] = val;
        parseProxyHeader(copy);
        parseProxyHeader(copy.subarray(0, at % (copy.length + 1)));
      }),
      { numRuns: 3000 },
    );
  });

  it('v1: parse(serialise(x)) = x', () => {
    fc.assert(
      fc.property(fc.boolean(), ipv4, ipv4, ipv6, ipv6, port, port, (six, a4, b4, a6, b6, p, q) => {
        const source = { ip: six ? a6 : a4, port: p };
        const destination = { ip: six ? b6 : b4, port: q };
        const bytes = serializeProxyV1({ family: six ? 'tcp6' : 'tcp4', source, destination });
        const r = header(parseProxyHeader(bytes));
        assert.equal(r.length, bytes.length);
        assert.equal(r.header.source?.port, p);
        assert.equal(r.header.destination?.port, q);
        assert.equal(r.header.source?.ip, canonical(source.ip));
        assert.equal(r.header.destination?.ip, canonical(destination.ip));
      }),
    );
  });

  it('v2: parse(serialise(x)) = x, TLVs included, with trailing session bytes left alone', () => {
    fc.assert(
      fc.property(fc.boolean(), ipv4, ipv4, ipv6, ipv6, port, port, fc.array(tlv, { maxLength: 4 }), fc.boolean(), fc.uint8Array({ maxLength: 20 }), (six, a4, b4, a6, b6, p, q, tlvs, crc, tail) => {
        const source = { ip: six ? a6 : a4, port: p };
        const destination = { ip: six ? b6 : b4, port: q };
        const bytes = serializeProxyV2({ command: 'proxy', family: six ? 'tcp6' : 'tcp4', source, destination, tlvs }, crc);
        const r = header(parseProxyHeader(Buffer.concat([bytes, tail])));
        assert.equal(r.length, bytes.length);
        assert.deepEqual(r.header.source, { ip: canonical(source.ip), port: p });
        assert.deepEqual(r.header.destination, { ip: canonical(destination.ip), port: q });
        const got = r.header.tlvs.filter((t) => t.type !== 3).map((t) => ({ type: t.type, value: Buffer.from(t.value) }));
        assert.deepEqual(got, tlvs.map((t) => ({ type: t.type, value: Buffer.from(t.value) })));
      }),
    );
  });
});

import { bytesToIp, ipToBytes } from '../../lib/intercept/address-util.js';
function canonical(ip: string): string {
  const b = ipToBytes(ip);
  if (!b) throw new Error('bad ip ' + ip);
  return bytesToIp(b);
}
