import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyHeaderMutations, DotStuffState, HeldMessage, splitFields } from '../../lib/intercept/held-message.js';
import { DataFramer } from '../../lib/smtp/data-framer.js';
import { makeTempDir } from '../helpers/temp-dir.js';

async function readAll(r: NodeJS.ReadableStream): Promise<string> {
  let s = '';
  for await (const c of r) s += (c as Buffer).toString('latin1');
  return s;
}

describe('intercept/held-message', () => {
  it('applies add, insert, change and remove like the milter and filter doors', () => {
    const fields = splitFields('Subject: hi\r\nX-Drop: 1\r\nReceived: a\r\n\tfolded\r\nX-Drop: 2\r\n');
    assert.deepEqual(fields, ['Subject: hi\r\n', 'X-Drop: 1\r\n', 'Received: a\r\n\tfolded\r\n', 'X-Drop: 2\r\n']);
    const out = applyHeaderMutations(fields, [
      { kind: 'add', name: 'X-Virus-Status', value: 'Clean' },
      { kind: 'insert', name: 'X-First', value: 'one\ntwo', index: 0 },
      { kind: 'change', name: 'x-drop', value: '', index: 2 },
      { kind: 'change', name: 'X-Drop', value: '', index: 1 },
      { kind: 'change', name: 'Subject', value: 'new', index: 1 },
      { kind: 'add', name: 'Bad Name', value: 'x' },
    ]);
    assert.equal(out.join(''), 'X-First: one\r\n\ttwo\r\nSubject: new\r\nReceived: a\r\n\tfolded\r\nX-Virus-Status: Clean\r\n');
  });

  it('edits only the header block; a message without a body is all header block; leading text goes first', async () => {
    const tmp = makeTempDir('sluice-held-');
    try {
      const h = new HeldMessage({ limit: 1 << 20, memory: 16, dir: () => tmp.path });
      for (const part of ['Subject: x\r\n', '\r\n', 'X-Not-A-Header: body\r\n']) h.write(Buffer.from(part));
      await h.finish();
      assert.equal(await readAll(h.edited('Trace: 1\r\n', [{ kind: 'add', name: 'X-A', value: 'a' }])), 'Trace: 1\r\nSubject: x\r\nX-A: a\r\n\r\nX-Not-A-Header: body\r\n');
      assert.equal(await readAll(h.raw()), 'Subject: x\r\n\r\nX-Not-A-Header: body\r\n');
      await h.dispose();
      const g = new HeldMessage({ limit: 1 << 20, dir: () => tmp.path });
      g.write(Buffer.from('Subject: only\r\n'));
      await g.finish();
      assert.equal(await readAll(g.edited('', [{ kind: 'add', name: 'X-A', value: 'a' }])), 'Subject: only\r\nX-A: a\r\n');
      assert.equal(g.wouldOverflow(1 << 20), true);
      assert.equal(g.wouldOverflow(100), false);
    } finally {
      tmp.remove();
    }
  });

  it('property: re-stuffed content, cut anywhere, unstuffs to the same content', () => {
    const line = fc.stringMatching(/^[.a-z ]{0,12}$/);
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.nat(60), { maxLength: 6 }), (lines, cuts) => {
        const content = Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1');
        const st = new DotStuffState();
        const points = [...new Set(cuts.map((c) => Math.min(c, content.length)))].sort((a, b) => a - b);
        const parts: Buffer[] = [];
        let from = 0;
        for (const p of [...points, content.length]) {
          parts.push(st.stuff(content.subarray(from, p)));
          from = p;
        }
        const wire = Buffer.concat([...parts, Buffer.from(st.lineStart ? '.\r\n' : '\r\n.\r\n')]);
        const f = new DataFramer('reject');
        const out = f.push(wire);
        assert.equal(out.end, true);
        assert.equal(Buffer.concat(out.content).toString('latin1'), content.toString('latin1'));
      }),
    );
  });
});
