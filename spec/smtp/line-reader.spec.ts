import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineReader, type LineEvent } from '../../lib/smtp/line-reader.js';

function drain(r: LineReader): LineEvent[] {
  const out: LineEvent[] = [];
  for (let e = r.next(); e; e = r.next()) out.push(e);
  return out;
}

describe('LineReader', () => {
  it('splits CRLF and bare LF lines and reports the ending', () => {
    const r = new LineReader(100);
    r.push(Buffer.from('EHLO a\r\nNOOP\nQU'));
    const ev = drain(r);
    assert.deepEqual(ev.map((e) => (e.kind === 'line' ? [e.line.toString(), e.ending] : e.kind)), [['EHLO a', 'crlf'], ['NOOP', 'lf']]);
    r.push(Buffer.from('IT\r\n'));
    const [q] = drain(r);
    assert.equal(q?.kind === 'line' && q.line.toString(), 'QUIT');
  });

  it('reports a too-long line once with its full byte count and resumes after it', () => {
    const r = new LineReader(10);
    r.push(Buffer.from('x'.repeat(25)));
    assert.deepEqual(drain(r), []);
    assert.ok(r.buffered <= 10);
    r.push(Buffer.from('y'.repeat(5) + '\r\nNOOP\r\n'));
    const ev = drain(r);
    assert.deepEqual(ev[0], { kind: 'too-long', bytes: 32 });
    assert.equal(ev[1]?.kind === 'line' && ev[1].line.toString(), 'NOOP');
  });

  it('a line of exactly cap bytes (CRLF included) passes, cap+1 does not', () => {
    const r = new LineReader(10);
    r.push(Buffer.from('12345678\r\n123456789\r\n'));
    const ev = drain(r);
    assert.equal(ev[0]?.kind, 'line');
    assert.deepEqual(ev[1], { kind: 'too-long', bytes: 11 });
  });

  it('property: any split of the input yields the same events, and memory never exceeds the cap', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', '\r', '\n', '\r\n', 'xxxxxxxx'), { maxLength: 60 }), fc.array(fc.nat(200), { maxLength: 8 }), (parts, cuts) => {
        const input = Buffer.from(parts.join(''));
        const whole = new LineReader(16);
        whole.push(input);
        const expected = drain(whole);
        const split = new LineReader(16);
        const got: LineEvent[] = [];
        const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
        let prev = 0;
        for (const p of [...points, input.length]) {
          split.push(input.subarray(prev, p));
          prev = p;
          got.push(...drain(split));
          assert.ok(split.buffered <= 16);
        }
        assert.deepEqual(got.map(show), expected.map(show));
      }),
    );
  });
});

function show(e: LineEvent): string {
  return e.kind === 'line' ? `L:${e.line.toString('latin1')}:${e.ending}` : `T:${e.bytes}`;
}
