/**
 * SMTP replies: the one shape every door renders (SMTP text, SMFIR_REPLYCODE, `action=` lines).
 * RFC 5321 §4.2 (reply codes), RFC 3463 / RFC 2034 (enhanced status codes).
 */

export interface SmtpReply {
  /** Three-digit reply code, 200..599. */
  readonly code: number;
  /** Enhanced status code "class.subject.detail", class equal to the code's first digit; absent if none. */
  readonly enhanced?: string;
  /** One or more text lines, without CR or LF. */
  readonly lines: readonly string[];
}

/** Raised for replies that would be invalid on the wire; its message names what is wrong. */
export class SmtpReplyFormatError extends Error {
  override readonly name = 'SmtpReplyFormatError';
}

/**
 * The only error whose text may reach a peer: it carries the reply to send.
 * Anything else that escapes a handler becomes a generic 451 4.3.0 and its details go to the log.
 */
export class SmtpReplyError extends Error {
  override readonly name = 'SmtpReplyError';
  constructor(readonly reply: SmtpReply) {
    super(`${reply.code}${reply.enhanced ? ' ' + reply.enhanced : ''} ${reply.lines.join(' / ')}`);
  }
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
/** Longest reply line we emit (RFC 5321 §4.5.3.1.5 allows 512 octets including code and CRLF). */
export const MAX_REPLY_TEXT = 500;

/** Returns a reason the reply is invalid, or undefined if it is fine. `kind` narrows the allowed class. */
export function replyProblem(reply: SmtpReply, kind?: 'success' | 'tempfail' | 'reject' | 'failure'): string | undefined {
  const { code, enhanced, lines } = reply;
  if (!Number.isInteger(code) || code < 200 || code > 599) return `reply code ${code} is not a three-digit code from 200 to 599`;
  const cls = Math.floor(code / 100);
  if (kind === 'tempfail' && cls !== 4) return `a tempfail needs a 4xx code, not ${code}`;
  if (kind === 'reject' && cls !== 5) return `a reject needs a 5xx code, not ${code}`;
  if (kind === 'failure' && cls !== 4 && cls !== 5) return `a failure reply needs a 4xx or 5xx code, not ${code}`;
  if (kind === 'success' && cls !== 2) return `a success reply needs a 2xx code, not ${code}`;
  if (cls === 3) return `reply code ${code} is an intermediate (3xx) reply and cannot be a verdict`;
  if (enhanced !== undefined) {
    const m = ENHANCED.exec(enhanced);
    if (!m) return `enhanced status code "${enhanced}" is not of the form class.subject.detail (e.g. 5.7.1)`;
    if (Number(m[1]) !== cls) return `enhanced status code ${enhanced} has class ${m[1]} but the reply code ${code} has class ${cls}`;
  }
  if (lines.length === 0) return 'a reply needs at least one line of text';
  for (const line of lines) {
    if (/[\r\n\0]/.test(line)) return 'reply text may not contain CR, LF or NUL';
    if (line.length > MAX_REPLY_TEXT) return `reply line is ${line.length} characters; at most ${MAX_REPLY_TEXT} are allowed`;
  }
  return undefined;
}

/** Builds a reply, splitting text on newlines into lines; throws SmtpReplyFormatError if invalid. */
export function smtpReply(code: number, enhanced: string | undefined, text: string | readonly string[], kind?: 'success' | 'tempfail' | 'reject' | 'failure'): SmtpReply {
  const lines = typeof text === 'string' ? text.split(/\r?\n/) : [...text];
  const reply: SmtpReply = enhanced === undefined ? { code, lines } : { code, enhanced, lines };
  const problem = replyProblem(reply, kind);
  if (problem) throw new SmtpReplyFormatError(problem);
  return reply;
}

/**
 * Renders a reply for the SMTP wire: "250-first\r\n250 last\r\n".
 * With `useEnhanced` false (the peer did not advertise ENHANCEDSTATUSCODES) the enhanced code is left out.
 */
export function formatReply(reply: SmtpReply, useEnhanced = true): string {
  const prefix = useEnhanced && reply.enhanced ? `${reply.enhanced} ` : '';
  const last = reply.lines.length - 1;
  let out = '';
  for (let i = 0; i <= last; i++) {
    out += `${reply.code}${i === last ? ' ' : '-'}${prefix}${reply.lines[i] ?? ''}\r\n`;
  }
  return out;
}

/** Substitutes SMTP's reply text when it must carry no internal detail. */
export const GENERIC_TEMPFAIL: SmtpReply = Object.freeze({ code: 451, enhanced: '4.3.0', lines: ['Temporary local problem, please try again later'] });
