/**
 * Renders an engine Verdict as one Postfix access(5) action for the policy delegation protocol.
 *
 *   continue   → DUNNO (no opinion: Postfix goes on with the rest of the restriction list)
 *   accept     → DUNNO by default; OK only with acceptAction 'ok' (OK would skip every later restriction in the
 *                same list, e.g. reject_unauth_destination placed after us: an open relay by accident)
 *   reject     → "5NN X.Y.Z text" (the rule's reply, validated; default 550 5.7.1)
 *   tempfail   → "4NN X.Y.Z text" (the rule's reply; default 450 4.7.1). Not DEFER_IF_PERMIT: a rule that says
 *                tempfail means it, and the exact code and text reach the client.
 *   discard    → "DISCARD text" (the whole message)
 *   quarantine → "HOLD text" (the whole message stays in Postfix's hold queue)
 * Header mutations: at most one "PREPEND name: value" per answer (see policy-session.ts for the rest).
 */
import { MAX_REPLY_TEXT, replyProblem, type SmtpReply } from '../core/smtp-reply.js';
import type { Verdict } from '../core/verdict.js';

/** Postfix access(5) action keywords (case-insensitive on the wire). */
export const POLICY_ACTION = {
  /** DUNNO: no decision, continue with the next restriction. */
  DUNNO: 'DUNNO',
  /** OK: accept; skips the rest of this restriction list. */
  OK: 'OK',
  /** DISCARD text: accept and silently drop the whole message. */
  DISCARD: 'DISCARD',
  /** HOLD text: keep the whole message in the hold queue. */
  HOLD: 'HOLD',
  /** PREPEND header: value: add a header line to the message (not valid at END-OF-MESSAGE). */
  PREPEND: 'PREPEND',
} as const;

export type AcceptAction = 'dunno' | 'ok';

const DEFAULT_REJECT: SmtpReply = { code: 550, enhanced: '5.7.1', lines: ['Rejected by policy'] };
const DEFAULT_TEMPFAIL: SmtpReply = { code: 450, enhanced: '4.7.1', lines: ['Try again later'] };

/** Printable ASCII only, one line, bounded: the action goes into Postfix's SMTP reply and its log. */
export function cleanActionText(text: string, max = MAX_REPLY_TEXT): string {
  // eslint-disable-next-line no-control-regex
  const t = text.replace(/[\t\r\n ]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').trim();
  return t.length > max ? t.slice(0, max) : t;
}

/** "550 5.7.1 text" from a reply; multi-line replies are joined with "; ". Falls back if the reply is unusable. */
export function replyAction(reply: SmtpReply | undefined, cls: 4 | 5): string {
  const fallback = cls === 5 ? DEFAULT_REJECT : DEFAULT_TEMPFAIL;
  let r = reply ?? fallback;
  if (replyProblem(r, cls === 5 ? 'reject' : 'tempfail') !== undefined) r = fallback;
  const text = cleanActionText(r.lines.join('; ')) || (fallback.lines[0] ?? '');
  return `${r.code} ${r.enhanced ?? `${cls}.7.1`} ${text}`;
}

function withText(keyword: string, text: string | undefined): string {
  const t = text === undefined ? '' : cleanActionText(text);
  return t === '' ? keyword : `${keyword} ${t}`;
}

/** Header name per RFC 5322 ftext; value printable, one line. Returns undefined when it cannot be sent. */
export function prependAction(name: string, value: string): string | undefined {
  if (!/^[\x21-\x39\x3b-\x7e]{1,76}$/.test(name)) return undefined;
  const v = cleanActionText(value, 900);
  return `${POLICY_ACTION.PREPEND} ${name}: ${v}`;
}

/** The action for a terminal verdict (anything but continue). */
export function verdictAction(v: Verdict, acceptAction: AcceptAction): string {
  switch (v.action) {
    case 'continue':
      return POLICY_ACTION.DUNNO;
    case 'accept':
      return acceptAction === 'ok' ? POLICY_ACTION.OK : POLICY_ACTION.DUNNO;
    case 'reject':
      return replyAction(v.reply, 5);
    case 'tempfail':
      return replyAction(v.reply, 4);
    case 'discard':
      return withText(POLICY_ACTION.DISCARD, v.reason ?? v.reply?.lines.join('; '));
    case 'quarantine':
      return withText(POLICY_ACTION.HOLD, v.reason ?? v.reply?.lines.join('; '));
  }
}
