/**
 * Takeover: after a refusal that ends the relay (or an upstream failure) the door answers the client itself,
 * like smtp-gated's "fake MSA": 221 to QUIT, 250 to NOOP/RSET/HELO/EHLO, 451 <reason> to MAIL, 503 to RCPT/DATA,
 * 502 otherwise; at most `budget` commands.
 */
import type { SmtpReply } from '../core/smtp-reply.js';
import { formatReply } from '../core/smtp-reply.js';
import type { SmtpCommand } from '../smtp/command-parser.js';
import { TAKEOVER_REPLIES } from './intercept-replies.js';

export interface TakeoverAnswer {
  readonly text: string;
  readonly close: boolean;
  /** The client just said EHLO: from now on we advertise (and use) enhanced status codes ourselves. */
  readonly enablesEnhanced?: boolean;
}

export class TakeoverResponder {
  private count = 0;

  constructor(
    private readonly hostname: string,
    private readonly reason: SmtpReply,
    private readonly budget: number,
  ) {}

  answer(cmd: SmtpCommand | 'too-long', enhanced: boolean): TakeoverAnswer {
    const f = (reply: SmtpReply, close = false): TakeoverAnswer => ({ text: formatReply(reply, enhanced), close });
    if (cmd !== 'too-long' && cmd.verb === 'QUIT') return { text: formatReply({ ...TAKEOVER_REPLIES.signOff, lines: [`${this.hostname} Signing off`] }, enhanced), close: true };
    if (++this.count > this.budget) return f(TAKEOVER_REPLIES.budget, true);
    if (cmd === 'too-long') return f(TAKEOVER_REPLIES.unimplemented);
    switch (cmd.verb) {
      case 'NOOP':
      case 'RSET':
        return f(TAKEOVER_REPLIES.ok);
      case 'HELO':
        return { text: `250 ${this.hostname} SMTP proxy, hello\r\n`, close: false };
      case 'EHLO':
        return { text: `250-${this.hostname} SMTP proxy, hello\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n`, close: false, enablesEnhanced: true };
      case 'MAIL':
        return f(this.reason);
      case 'RCPT':
      case 'DATA':
        return f(TAKEOVER_REPLIES.protocol);
      default:
        return f(TAKEOVER_REPLIES.unimplemented);
    }
  }
}
