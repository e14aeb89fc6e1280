import assert from 'node:assert/strict';
import fc from 'fast-check';
import { editEhloReply } from '../../lib/smtp/ehlo-capabilities.js';
import { parseReply, ReplyParser, type ParsedReply } from '../../lib/smtp/reply-parser.js';
import { xtextDecode, xtextEncode } from '../../lib/smtp/xtext.js';
import { HeaderCollector } from '../../lib/smtp/header-collector.js';
import { decodeSaslUser } from '../../lib/smtp/sasl-user.js';

function reply(text: string): ParsedReply {
  const r = parseReply(text);
  assert.ok('code' in r);
  return r;
}

describe('editEhloReply', () => {
  const ehlo = reply('250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-XCLIENT ADDR\r\n250-8BITMIME\r\n250 CHUNKING\r\n');
  it('removes CHUNKING/XCLIENT, keeps PIPELINING, fixes the last line', () => {
    const e = editEhloReply(ehlo, { removeStarttls: false });
    assert.equal(e.raw, '250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n');
    assert.deepEqual([e.enhancedStatusCodes, e.pipelining, e.starttls, e.size], [true, true, true, 1000]);
    assert.deepEqual(e.auth, ['PLAIN', 'LOGIN']);
    assert.deepEqual(e.removed, ['XCLIENT', 'CHUNKING']);
  });
  it('removes STARTTLS on request', () => {
    const e = editEhloReply(ehlo, { removeStarttls: true });
    assert.ok(!e.raw.includes('STARTTLS'));
    assert.equal(e.starttls, false);
  });
  it('a single-line reply stays as it is', () => {
    assert.equal(editEhloReply(reply('250 mx\r\n'), { removeStarttls: true }).raw, '250 mx\r\n');
  });
});

describe('xtext', () => {
  it('encodes + = and controls', () => {
    assert.equal(xtextEncode('a+b=c d'), 'a+2Bb+3Dc+20d');
    assert.equal(xtextDecode('a+2Bb+3Dc+20d'), 'a+b=c d');
    assert.throws(() => xtextDecode('a+4'));
    assert.throws(() => xtextDecode('a b'));
  });
  it('property: decode(encode(x)) = x', () => {
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => assert.equal(xtextDecode(xtextEncode(s)), Buffer.from(s, 'utf8').toString('utf8'))));
  });
});

describe('HeaderCollector', () => {
  it('collects folded headers split across chunks', () => {
    const h = new HeaderCollector();
    const text = 'Subject: hello\r\n  world\r\nFrom: a@b\r\n\r\nbody\r\n';
    let got;
    for (const ch of text) got ??= h.push(Buffer.from(ch));
    assert.deepEqual(got?.headers, [['Subject', 'hello world'], ['From', 'a@b']]);
    assert.equal(got?.truncated, false);
  });
  it('stops at the cap', () => {
    const h = new HeaderCollector(100);
    const got = h.push(Buffer.from('X-A: ' + 'a'.repeat(200) + '\r\n'));
    assert.equal(got?.truncated, true);
  });
});

describe('decodeSaslUser', () => {
  it('PLAIN and LOGIN', () => {
    assert.equal(decodeSaslUser('PLAIN', Buffer.from('\0alice\0secret').toString('base64'), 0), 'alice');
    assert.equal(decodeSaslUser('LOGIN', Buffer.from('bob').toString('base64'), 0), 'bob');
    assert.equal(decodeSaslUser('CRAM-MD5', 'abc', 0), undefined);
  });
});

describe('codecs never throw on arbitrary bytes', () => {
  it('HeaderCollector: any bytes in any chunks; never holds more than its cap', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }), (chunks) => {
        const h = new HeaderCollector(512);
        for (const c of chunks) h.push(Buffer.from(c));
        const b = h.finish();
        if (b) assert.ok(b.bytes <= 512);
      }),
    );
  });
  it('ReplyParser and editEhloReply: any lines', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('250-X', '250 Y', '250-CHUNKING', '220 hi')), { maxLength: 20 }), (lines) => {
        const p = new ReplyParser(5);
        for (const l of lines) {
          const ev = p.pushLine(l);
          if (ev?.kind === 'reply') editEhloReply(ev.reply, { removeStarttls: true });
        }
      }),
    );
  });
});
