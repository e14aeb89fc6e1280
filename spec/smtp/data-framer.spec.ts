import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { DataFramer, type BareLineEndingPolicy } from '../../lib/smtp/data-framer.js';
import { DotStuffer, DotUnstuffer } from '../../lib/smtp/dot-streams.js';

interface Run { forward: string; content: string; end: boolean; rest: string; bare: number }

function run(input: string | Buffer, bare: BareLineEndingPolicy = 'reject', cuts: number[] = []): Run {
  const buf = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const f = new DataFramer(bare);
  const out: Run = { forward: '', content: '', end: false, rest: '', bare: 0 };
  let prev = 0;
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  for (const p of [...points, buf.length]) {
    const r = f.push(buf.subarray(prev, p));
    prev = p;
    out.forward += Buffer.concat(r.forward).toString('latin1');
    out.content += Buffer.concat(r.content).toString('latin1');
    if (r.end) {
      out.end = true;
      out.rest += r.rest?.toString('latin1') ?? '';
    }
  }
  out.bare = f.bareLineEndings;
  return out;
}

async function pipeThrough(t: NodeJS.ReadWriteStream, input: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  t.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((res, rej) => {
    t.on('end', res);
    t.on('error', rej);
  });
  Readable.from([input]).pipe(t as NodeJS.WritableStream);
  await done;
  return Buffer.concat(chunks);
}

describe('DataFramer', () => {
  it('ends only on CRLF.CRLF and unstuffs', () => {
    const r = run('Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n');
    assert.equal(r.end, true);
    assert.equal(r.forward, 'Subject: x\r\n\r\n..dot\r\n');
    assert.equal(r.content, 'Subject: x\r\n\r\n.dot\r\n');
    assert.equal(r.rest, 'QUIT\r\n');
  });

  it('an empty message ends at once', () => {
    const r = run('.\r\n');
    assert.deepEqual([r.end, r.forward, r.content], [true, '', '']);
  });

  for (const probe of ['a\n.\nMAIL FROM:<x@y>\r\n', 'a\r\n.\nMAIL FROM:<x@y>\r\n', 'a\n.\r\nMAIL FROM:<x@y>\r\n', 'a\r.\rMAIL\r\n', 'a\r\n.\rMAIL\r\n']) {
    it(`smuggling probe ${JSON.stringify(probe)}: never an end, reject stops forwarding at the bare byte`, () => {
      const r = run(probe);
      assert.equal(r.end, false);
      assert.ok(r.bare > 0);
      assert.ok(!r.forward.includes('MAIL'), 'nothing after the bare line ending is forwarded');
      const n = run(probe, 'normalise');
      assert.equal(n.end, false);
      assert.ok(!/[^\r]\n|\r[^\n]/.test(n.forward), 'normalised output has only CRLF');
      assert.ok(!n.forward.includes('\r\n.\r\n'), 'normalised output has no end marker');
      // After the normalised stream, the genuine end still works.
      const m = run(probe + '.\r\n', 'normalise');
      assert.equal(m.end, true);
      assert.equal(m.forward.includes('MAIL'), true);
    });
  }

  it('property: chunking never changes the result', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', '.', '\r', '\n', '\r\n', '\r\n.\r\n', '..', 'xyz'), { maxLength: 40 }), fc.array(fc.nat(300), { maxLength: 10 }), fc.constantFrom<BareLineEndingPolicy>('reject', 'normalise'), (parts, cuts, mode) => {
        const s = parts.join('');
        assert.deepEqual(run(s, mode, cuts), run(s, mode));
      }),
    );
  });

  it('property: unstuff(stuff(x)) = x (streams)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.stringMatching(/^[.a-z ]{0,12}$/), { maxLength: 20 }), async (lines) => {
        const x = Buffer.from(lines.map((l) => l + '\r\n').join(''), 'latin1');
        const stuffed = await pipeThrough(new DotStuffer(), x);
        assert.ok(stuffed.toString('latin1').endsWith('.\r\n'));
        const back = await pipeThrough(new DotUnstuffer(), stuffed);
        assert.equal(back.toString('latin1'), x.toString('latin1'));
      }),
      { numRuns: 60 },
    );
  });

  it('counts NUL bytes and long lines as content', () => {
    const body = '\0'.repeat(10) + 'x'.repeat(100_000) + '\r\n.\r\n';
    const r = run(body);
    assert.equal(r.end, true);
    assert.equal(r.content.length, 100_012);
  });
});
