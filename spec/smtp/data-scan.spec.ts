/**
 * The DATA framer's native fast path (native/src/data_scan.c) against the framer's own JavaScript loop: on any
 * bytes, cut into any chunks, with either bare line ending policy, both must frame identically (what is
 * forwarded, what is content, where the message ends, what is left over, the bare line endings counted).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DataFramer, type BareLineEndingPolicy } from '../../lib/smtp/data-framer.js';
import { NATIVE_DATA_SCAN, type DataScan } from '../../lib/smtp/data-scan.js';
import { requirePeer } from '../helpers/ci-guard.js';

interface Framed {
  forward: string;
  content: string;
  end: boolean;
  rest: string;
  bare: number;
  firstBare: string | undefined;
  contentBytes: number;
  rawBytes: number;
}

function frame(chunks: readonly Buffer[], policy: BareLineEndingPolicy, scan: DataScan | null): Framed {
  const f = new DataFramer(policy, scan);
  let forward = '';
  let content = '';
  let end = false;
  let rest = '';
  for (const c of chunks) {
    const out = f.push(c);
    forward += Buffer.concat(out.forward).toString('latin1');
    content += Buffer.concat(out.content).toString('latin1');
    if (out.end) {
      end = true;
      rest += out.rest?.toString('latin1') ?? '';
    }
  }
  return { forward, content, end, rest, bare: f.bareLineEndings, firstBare: f.firstBare, contentBytes: f.contentBytes, rawBytes: f.rawBytes };
}

/** Cuts `data` at the given fractions (so chunk borders land anywhere, including inside CRLF and ".\r\n"). */
function cut(data: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((x) => Math.floor(x * data.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    if (p > prev) out.push(data.subarray(prev, p));
    prev = Math.max(prev, p);
  }
  out.push(data.subarray(prev));
  return out;
}

describe('DATA framer: native fast path vs the JavaScript loop', function () {
  this.timeout(60_000);
  before(function () {
    requirePeer(this, NATIVE_DATA_SCAN !== undefined, 'the native addon (npx node-gyp rebuild -C native)');
  });

  it('scanData finds the first bare CR, bare LF, trailing CR or dot after LF, and nothing in ordinary lines', () => {
    const scan = NATIVE_DATA_SCAN!;
    const at = (s: string, from = 0): number => scan(Buffer.from(s, 'latin1'), from);
    assert.equal(at('line one\r\nline two\r\n'), 20);
    assert.equal(at('a\r\n.b\r\n'), 3);
    assert.equal(at('a\nb'), 1);
    assert.equal(at('\nb'), 0);
    assert.equal(at('a\rb\r\n'), 1);
    assert.equal(at('ab\r'), 2);
    assert.equal(at('.ab\r\n'), 5, 'a dot at position 0 is the caller\'s (line start state)');
    assert.equal(at('x'.repeat(40) + '\r\n' + 'y'.repeat(40) + '\n', 0), 82, 'inside the 16-byte blocks');
    assert.equal(at('x'.repeat(40) + '\r\n.' + 'y'.repeat(40), 0), 42);
    assert.equal(at('x'.repeat(33) + '\r', 0), 33, 'a CR as the last byte after the blocks');
    assert.equal(at('x'.repeat(15) + '\r' + '\n' + 'x'.repeat(30), 0), 47, 'a CRLF across a block border');
    assert.equal(at('a\r\nb\nc', 3), 4, 'from a start position');
    assert.equal(at('abc', 9), 3, 'a start past the end');
  });

  for (const policy of ['reject', 'normalise'] as const) {
    it(`frames identically on arbitrary bytes and chunkings (${policy})`, () => {
      const byte = fc.constantFrom(0x0d, 0x0a, 0x2e, 0x61, 0x62, 0x20, 0x0d, 0x0a, 0x2e);
      fc.assert(
        fc.property(fc.array(byte, { maxLength: 300 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }), (bytes, at) => {
          const data = Buffer.from(bytes);
          const chunks = cut(data, at);
          assert.deepEqual(frame(chunks, policy, NATIVE_DATA_SCAN!), frame(chunks, policy, null));
        }),
        { numRuns: 3000, seed: 20261121 },
      );
    });

    it(`frames identically on mail-like messages with long ordinary runs (${policy})`, () => {
      const line = fc.oneof(
        { weight: 8, arbitrary: fc.string({ unit: fc.constantFrom('a', 'b', ' ', 'x'), minLength: 0, maxLength: 90 }).map((s) => `${s}\r\n`) },
        { weight: 1, arbitrary: fc.constantFrom('.\r\n', '..dot\r\n', '.\n', '\n.\r\n', 'bare\nlf\r\n', 'bare\rcr\r\n', '\r\n', '\r', '\n') },
      );
      fc.assert(
        fc.property(fc.array(line, { maxLength: 120 }), fc.boolean(), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }), (lines, ended, at) => {
          const data = Buffer.from(lines.join('') + (ended ? '.\r\nQUIT\r\n' : ''), 'latin1');
          const chunks = cut(data, at);
          assert.deepEqual(frame(chunks, policy, NATIVE_DATA_SCAN!), frame(chunks, policy, null));
        }),
        { numRuns: 1500, seed: 7 },
      );
    });
  }
});
