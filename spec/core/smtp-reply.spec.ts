import assert from 'node:assert/strict';
import { formatReply, replyProblem, smtpReply, SmtpReplyFormatError } from '../../lib/core/smtp-reply.js';

describe('core/smtp-reply', () => {
  it('renders single and multi-line replies with the enhanced code on every line', () => {
    assert.equal(formatReply(smtpReply(550, '5.7.1', 'Forbidden')), '550 5.7.1 Forbidden\r\n');
    assert.equal(formatReply(smtpReply(451, '4.3.0', 'a\nb')), '451-4.3.0 a\r\n451 4.3.0 b\r\n');
  });
  it('omits the enhanced code when the peer did not advertise ENHANCEDSTATUSCODES', () => {
    assert.equal(formatReply(smtpReply(550, '5.7.1', 'no'), false), '550 no\r\n');
  });
  it('refuses a class mismatch between code and enhanced code', () => {
    assert.match(replyProblem({ code: 550, enhanced: '4.7.1', lines: ['x'] }) ?? '', /class 4 but the reply code 550 has class 5/);
    assert.throws(() => smtpReply(450, '5.0.0', 'x'), SmtpReplyFormatError);
  });
  it('enforces 4xx for tempfail and 5xx for reject', () => {
    assert.throws(() => smtpReply(550, undefined, 'x', 'tempfail'), /tempfail needs a 4xx/);
    assert.throws(() => smtpReply(451, undefined, 'x', 'reject'), /reject needs a 5xx/);
    assert.throws(() => smtpReply(354, undefined, 'x'), /intermediate/);
    assert.throws(() => smtpReply(99, undefined, 'x'), /three-digit/);
  });
  it('refuses CR, LF or NUL inside a line and over-long lines', () => {
    assert.throws(() => smtpReply(550, undefined, ['a\rb']), /CR, LF or NUL/);
    assert.throws(() => smtpReply(550, undefined, 'x'.repeat(600)), /at most 500/);
  });
});
