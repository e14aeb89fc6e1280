/**
 * Renders an SmtpReply as SMFIR_REPLYCODE text that Postfix (3.7 and the strict 3.12 snapshot checks) and Sendmail
 * accept: 4xx/5xx matching the verdict, enhanced code of the same class, lines joined with CRLF ("ddd-" on all but
 * the last line), no CR/LF/NUL inside a line, at most 32 lines of at most 980 characters, and every '%' doubled
 * (Sendmail reads the text as a format string; Postfix turns "%%" back into "%"). protocols.md §1.9.
 */
import { replyProblem, type SmtpReply } from '../core/smtp-reply.js';
import { MAX_REPLY_LINES, MAX_REPLY_LINE_TEXT } from './milter-constants.js';

export type ReplyCodeResult = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly problem: string };

export function renderReplyCode(reply: SmtpReply, action: 'reject' | 'tempfail'): ReplyCodeResult {
  const problem = replyProblem(reply, action);
  if (problem) return { ok: false, problem };
  if (reply.lines.length > MAX_REPLY_LINES) return { ok: false, problem: `a milter reply may have at most ${MAX_REPLY_LINES} lines, not ${reply.lines.length}` };
  const prefix = reply.enhanced ? `${reply.enhanced} ` : '';
  const last = reply.lines.length - 1;
  const out: string[] = [];
  for (let i = 0; i <= last; i++) {
    const line = reply.lines[i] ?? '';
    if (line.length > MAX_REPLY_LINE_TEXT) return { ok: false, problem: `a milter reply line may have at most ${MAX_REPLY_LINE_TEXT} characters` };
    // Without an enhanced code, text starting with a digit would be read as one (Postfix then demands its class
    // match the reply code): give such lines the neutral "X.0.0" (RFC 3463 "other undefined status").
    const lead = prefix || (/^\d/.test(line) ? `${Math.floor(reply.code / 100)}.0.0 ` : '');
    out.push(`${reply.code}${i === last ? ' ' : '-'}${lead}${line.replace(/%/g, '%%')}`);
  }
  return { ok: true, text: out.join('\r\n') };
}
