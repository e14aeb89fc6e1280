import assert from 'node:assert/strict';
import fc from 'fast-check';
import { renderLeadingHeaders } from '../../lib/intercept/trace-header.js';
import { TakeoverResponder } from '../../lib/intercept/takeover-responder.js';
import { parseCommand } from '../../lib/smtp/command-parser.js';
import { TAKEOVER_REASONS } from '../../lib/intercept/intercept-replies.js';

describe('renderLeadingHeaders', () => {
  it('renders add and insert-at-0, folds line breaks, skips what cannot go first', () => {
    const r = renderLeadingHeaders([
      { kind: 'add', name: 'X-NAT-Received', value: 'from [192.0.2.1]:1234\nby gw.example' },
      { kind: 'insert', name: 'X-First', value: 'one', index: 0 },
      { kind: 'insert', name: 'X-Later', value: 'two', index: 3 },
      { kind: 'change', name: 'Subject', value: 'x', index: 1 },
      { kind: 'add', name: 'Bad Name', value: 'x' },
    ]);
    assert.equal(r.text, 'X-NAT-Received: from [192.0.2.1]:1234\r\n\tby gw.example\r\nX-First: one\r\n');
    assert.equal(r.skipped.length, 3);
  });

  it('property: no value can end the header block or start a header of its own', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (value) => {
        const { text } = renderLeadingHeaders([{ kind: 'add', name: 'X-T', value }]);
        if (text === '') return;
        assert.ok(text.startsWith('X-T: '));
        assert.ok(text.endsWith('\r\n'));
        const lines = text.slice(0, -2).split('\r\n');
        for (const l of lines.slice(1)) assert.ok(l.startsWith('\t'), JSON.stringify(text));
        assert.ok(!/\r(?!\n)|(?<!\r)\n|\0/.test(text));
      }),
    );
  });
});

describe('TakeoverResponder', () => {
  it('answers like smtp-gated, with or without enhanced codes, within its budget', () => {
    const t = new TakeoverResponder('gw.test', TAKEOVER_REASONS.upstreamUnreachable, 4);
    assert.deepEqual(t.answer(parseCommand('NOOP'), true), { text: '250 2.0.0 Ok\r\n', close: false });
    assert.deepEqual(t.answer(parseCommand('MAIL FROM:<a@b>'), false), { text: '451 Next hop unreachable, try again later\r\n', close: false });
    assert.deepEqual(t.answer(parseCommand('DATA'), true), { text: '503 5.5.1 Protocol error\r\n', close: false });
    assert.deepEqual(t.answer(parseCommand('VRFY x'), true), { text: '502 5.5.2 Command not implemented\r\n', close: false });
    assert.deepEqual(t.answer(parseCommand('RSET'), true), { text: '421 4.7.0 Too many commands, closing connection\r\n', close: true });
    assert.deepEqual(t.answer(parseCommand('QUIT'), true), { text: '221 2.0.0 gw.test Signing off\r\n', close: true });
  });
});
