import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ReplyParser, parseReply } from '../../lib/smtp/reply-parser.js';
import { formatReply } from '../../lib/core/smtp-reply.js';

describe('ReplyParser', () => {
  it('parses multi-line replies with enhanced codes and keeps the raw text', () => {
    const r = parseReply('250-2.1.0 first\r\n250 2.1.0 second\r\n');
    assert.ok('code' in r);
    assert.equal(r.code, 250);
    assert.equal(r.enhanced, '2.1.0');
    assert.deepEqual(r.lines, ['first', 'second']);
    assert.equal(r.raw, '250-2.1.0 first\r\n250 2.1.0 second\r\n');
  });

  it('ignores an enhanced code whose class does not match', () => {
    const r = parseReply('250 5.1.0 odd\r\n');
    assert.ok('code' in r);
    assert.equal(r.enhanced, undefined);
    assert.deepEqual(r.lines, ['5.1.0 odd']);
  });

  it('accepts a bare code line', () => {
    const r = parseReply('354\r\n');
    assert.ok('code' in r && r.code === 354 && r.lines[0] === '');
  });

  it('reports garbage, code changes and overlong replies', () => {
    assert.ok('problem' in parseReply('hello\r\n'));
    assert.ok('problem' in parseReply('250-a\r\n251 b\r\n'));
    assert.ok('problem' in parseReply('250-a\r\n'.repeat(5) + '250 b\r\n', 3));
    const p = new ReplyParser();
    assert.equal(p.pushLine('220-x'), undefined);
    assert.equal(p.pending, true);
  });

  it('property: parse(formatReply(x)) = x', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 599 }).filter((c) => Math.floor(c / 100) !== 3),
        fc.boolean(),
        fc.array(fc.stringMatching(/^[A-Za-z0-9][ -~]{0,40}$/).filter((s) => !/^\d\.\d/.test(s)), { minLength: 1, maxLength: 6 }),
        (code, withEnh, lines) => {
          const reply = withEnh ? { code, enhanced: `${Math.floor(code / 100)}.1.2`, lines } : { code, lines };
          const parsed = parseReply(formatReply(reply));
          assert.ok('code' in parsed);
          assert.equal(parsed.code, reply.code);
          assert.equal(parsed.enhanced, reply.enhanced);
          assert.deepEqual(parsed.lines, lines.map((l) => l));
        },
      ),
    );
  });
});
