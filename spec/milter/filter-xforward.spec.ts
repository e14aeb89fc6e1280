import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PassThrough, Readable } from 'node:stream';
import { applyMutations, HeaderRewriter, splitFields } from '../../lib/milter/filter-headers.js';
import { addrValue, encodeXForward, parseXForward, xforwardAddress, XFORWARD_NAMES } from '../../lib/milter/filter-xforward.js';

describe('filter-xforward: XFORWARD in and out', () => {
  it('decodes xtext, keeps earlier attributes, maps [UNAVAILABLE] and [TEMPUNAVAIL] to unknown', () => {
    let r = parseXForward('NAME=host+2Eexample ADDR=192.0.2.7 PORT=4242', {});
    assert.ok(r.ok);
    assert.deepEqual(r.attrs, { NAME: 'host.example', ADDR: '192.0.2.7', PORT: '4242' });
    r = parseXForward('proto=ESMTP helo=client.example name=[tempunavail] IDENT=[UNAVAILABLE] SOURCE=REMOTE', r.attrs);
    assert.ok(r.ok);
    assert.deepEqual(r.attrs, { ADDR: '192.0.2.7', PORT: '4242', PROTO: 'ESMTP', HELO: 'client.example', SOURCE: 'REMOTE' });
  });

  it('answers like Postfix for bad names, values and lengths', () => {
    const bad = (arg: string) => {
      const r = parseXForward(arg, {});
      assert.ok(!r.ok, arg);
      return r.reply;
    };
    assert.equal(bad('FOO=bar'), '501 5.5.4 Bad XFORWARD attribute name: FOO');
    assert.equal(bad(''), '501 5.5.4 Syntax: XFORWARD attribute=value...');
    assert.equal(bad('NAME'), '501 5.5.4 Syntax: XFORWARD attribute=value...');
    assert.equal(bad('PORT=99999'), '501 5.5.4 Bad PORT syntax');
    assert.equal(bad('ADDR=not-an-address'), '501 5.5.4 Bad ADDR syntax');
    assert.equal(bad('HELO=a+20b'), '501 5.5.4 Bad HELO syntax');
    assert.equal(bad(`HELO=${'a'.repeat(256)}`), '501 5.5.4 HELO attribute value too long');
  });

  it('ADDR with and without the IPv6: prefix', () => {
    assert.equal(xforwardAddress('IPv6:2001:db8::1'), '2001:db8::1');
    assert.equal(xforwardAddress('ipv6:2001:db8::1'), '2001:db8::1');
    assert.equal(addrValue('2001:db8::1'), 'IPv6:2001:db8::1');
    assert.equal(addrValue('192.0.2.1'), '192.0.2.1');
  });

  it('encodes only what the next hop supports, unknowns as [UNAVAILABLE], lines ≤ 512', () => {
    const lines = encodeXForward({ NAME: 'host example', ADDR: '2001:db8::1', HELO: 'h=x' }, new Set(['NAME', 'ADDR', 'HELO', 'IDENT']));
    assert.deepEqual(lines, ['XFORWARD NAME=host+20example ADDR=IPv6:2001:db8::1 HELO=h+3Dx IDENT=[UNAVAILABLE]']);
    const long = encodeXForward(Object.fromEntries(XFORWARD_NAMES.map((n) => [n, 'x'.repeat(200)])), new Set(XFORWARD_NAMES));
    assert.ok(long.length > 1);
    for (const l of long) assert.ok(l.length <= 510, String(l.length));
    // Values that grow past 255 when encoded are not sent.
    assert.deepEqual(encodeXForward({ HELO: '\u00e9'.repeat(100) }, new Set(['HELO'])), ['XFORWARD HELO=[UNAVAILABLE]']);
  });

  it('round-trips through encode → parse (property)', () => {
    const value = fc.string({ minLength: 1, maxLength: 60 }).filter((s) => !/[\x00-\x20\x7f-\uffff]/.test(s) && !/^\[(un|temp)/i.test(s));
    fc.assert(
      fc.property(fc.record({ NAME: value, HELO: value, IDENT: value }, { requiredKeys: [] }), (attrs) => {
        const lines = encodeXForward(attrs, new Set(XFORWARD_NAMES));
        let got = {};
        for (const l of lines) {
          const r = parseXForward(l.slice('XFORWARD '.length), got);
          assert.ok(r.ok);
          got = r.attrs;
        }
        assert.deepEqual(got, { ...attrs });
      }),
    );
  });
});

describe('filter-headers: header edits while streaming', () => {
  const msg = 'Received: from a\r\n\tby b\r\nSubject: hi\r\nX-Tag: 1\r\nX-Tag: 2\r\n\r\nbody\r\n.line\r\n';

  async function run(input: string, chunk: number, muts: Parameters<typeof applyMutations>[1]): Promise<string> {
    const parts: Buffer[] = [];
    const b = Buffer.from(input, 'latin1');
    for (let i = 0; i < b.length; i += chunk) parts.push(b.subarray(i, i + chunk));
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve, reject) => {
      Readable.from(parts).pipe(new HeaderRewriter(muts)).on('error', reject).pipe(out).on('finish', resolve);
    });
    return Buffer.concat(chunks).toString('latin1');
  }

  it('splits folded fields', () => {
    assert.deepEqual(splitFields('A: 1\r\n\tcont\r\nB: 2\r\n'), ['A: 1\r\n\tcont\r\n', 'B: 2\r\n']);
  });

  it('adds, inserts, changes and deletes, at any chunking', async () => {
    const muts = [
      { kind: 'add' as const, name: 'X-Added', value: 'end' },
      { kind: 'insert' as const, name: 'X-First', value: 'top', index: 0 },
      { kind: 'change' as const, name: 'x-tag', value: 'two', index: 2 },
      { kind: 'change' as const, name: 'Subject', value: '', index: 1 },
      { kind: 'change' as const, name: 'X-Missing', value: 'added', index: 1 },
    ];
    const want = 'X-First: top\r\nReceived: from a\r\n\tby b\r\nX-Tag: 1\r\nx-tag: two\r\nX-Added: end\r\nX-Missing: added\r\n\r\nbody\r\n.line\r\n';
    for (const chunk of [1, 2, 3, 7, 1000]) assert.equal(await run(msg, chunk, muts), want, `chunk ${chunk}`);
  });

  it('passes a message through unchanged without mutations, and one ending mid-line as it came', async () => {
    assert.equal(await run(msg, 5, []), msg);
    assert.equal(await run('Subject: x\r\nno end', 3, [{ kind: 'add', name: 'X', value: '1' }]), 'Subject: x\r\nno end');
    // No body (RFC 5322 §3.5: the blank line and the body are optional), or no content at all: still edited.
    assert.equal(await run('Subject: x\r\n', 3, [{ kind: 'add', name: 'X', value: '1' }]), 'Subject: x\r\nX: 1\r\n');
    assert.equal(await run('', 3, [{ kind: 'add', name: 'X', value: '1' }]), 'X: 1\r\n');
    // A message that starts with the empty line has no headers: added ones go before it.
    assert.equal(await run('\r\nbody\r\n', 1, [{ kind: 'add', name: 'X', value: '1' }]), 'X: 1\r\n\r\nbody\r\n');
  });

  it('never lets CR/LF in a value start a new header', async () => {
    const out = await run(msg, 50, [{ kind: 'add', name: 'X-Evil', value: 'a\r\nBcc: victim@example.com' }]);
    assert.ok(!/^Bcc:/m.test(out));
    assert.match(out, /^X-Evil: a Bcc: victim@example\.com\r$/m);
  });
});
