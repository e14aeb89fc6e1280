import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineEndNormalizer } from '../../lib/scanners/line-ends.js';

function normaliseAll(parts: readonly Buffer[]): string {
  const n = new LineEndNormalizer();
  return Buffer.concat([...parts.map((p) => n.push(p)), n.flush()]).toString('latin1');
}

describe('LineEndNormalizer', () => {
  it('turns bare LF and bare CR into CRLF and keeps CRLF', () => {
    assert.equal(normaliseAll([Buffer.from('a\nb\r\nc\rd\r')]), 'a\r\nb\r\nc\r\nd\r\n');
  });

  it('handles a CRLF split across chunks', () => {
    assert.equal(normaliseAll([Buffer.from('a\r'), Buffer.from('\nb')]), 'a\r\nb');
    assert.equal(normaliseAll([Buffer.from('a\r'), Buffer.from('b')]), 'a\r\nb');
  });

  it('is chunking-independent and leaves no bare CR or LF (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', '.', '\r', '\n', 'x'), { maxLength: 60 }), fc.array(fc.nat(60), { maxLength: 5 }), (chars, cuts) => {
        const whole = Buffer.from(chars.join(''), 'latin1');
        const points = [...new Set(cuts.filter((c) => c <= whole.length))].sort((a, b) => a - b);
        const parts: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          parts.push(whole.subarray(prev, p));
          prev = p;
        }
        parts.push(whole.subarray(prev));
        const out = normaliseAll(parts);
        assert.equal(out, normaliseAll([whole]));
        assert.ok(!/\r(?!\n)|(?<!\r)\n/.test(out));
      }),
    );
  });
});
