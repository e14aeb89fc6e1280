/**
 * Replies the intercept door writes itself (as opposed to relaying the upstream's). Texts carry no internal
 * detail; reasons that reach a client are fixed phrases. Enhanced codes are dropped by formatReply() when the
 * upstream did not advertise ENHANCEDSTATUSCODES.
 */
import type { SmtpReply } from '../core/smtp-reply.js';

const r = (code: number, enhanced: string, text: string): SmtpReply => Object.freeze({ code, enhanced, lines: [text] });

export const REPLIES = {
  lineTooLong: r(500, '5.5.2', 'Line too long'),
  syntax: r(500, '5.5.2', 'Syntax error, command unrecognized'),
  params: r(501, '5.5.4', 'Syntax error in parameters or arguments'),
  strayByte: r(500, '5.5.2', 'Syntax error: bare CR or NUL in command line'),
  notPermitted: r(502, '5.5.1', 'Command not permitted'),
  notImplemented: r(502, '5.5.1', 'Command not implemented'),
  starttlsForbidden: r(502, '5.5.1', 'STARTTLS not available'),
  tooManyRecipients: r(452, '4.5.3', 'Too many recipients'),
  rejected: r(550, '5.7.1', 'Rejected by policy'),
  tempfailed: r(451, '4.7.1', 'Temporarily rejected by policy, try again later'),
  bareLineEnding: r(550, '5.6.0', 'Message contains bare CR or LF characters; lines must end in CRLF'),
  tooBig: r(552, '5.3.4', 'Message size exceeds fixed maximum message size'),
  upstreamLost: r(451, '4.4.2', 'Connection to the next hop lost, try again later'),
  locked: r(451, '4.7.1', 'Service temporarily refused for your host'),
  discarded: r(250, '2.0.0', 'Ok'),
  quarantineRefused: r(550, '5.7.1', 'Message refused by content policy'),
  quarantined: r(250, '2.0.0', 'Ok: message accepted for review'),
  quarantineFailed: r(451, '4.3.0', 'Message could not be held for review, try again later'),
  holdFailed: r(451, '4.3.0', 'Local error, try again later'),
  errorBudget: r(421, '4.7.0', 'Too many errors, closing connection'),
} as const;

export const TAKEOVER_REPLIES = {
  signOff: r(221, '2.0.0', 'Signing off'),
  ok: r(250, '2.0.0', 'Ok'),
  protocol: r(503, '5.5.1', 'Protocol error'),
  unimplemented: r(502, '5.5.2', 'Command not implemented'),
  budget: r(421, '4.7.0', 'Too many commands, closing connection'),
  timeout: r(421, '4.4.2', 'SMTP session timeout, closing connection'),
} as const;

/** Reasons a session was taken over, as shown to the client at MAIL (451 <reason>). */
export const TAKEOVER_REASONS = {
  policy: r(451, '4.3.2', 'Session refused by policy'),
  upstreamUnreachable: r(451, '4.4.1', 'Next hop unreachable, try again later'),
  upstreamLost: r(451, '4.4.2', 'Connection to the next hop lost, try again later'),
  upstreamTimeout: r(451, '4.4.2', 'Next hop timed out, try again later'),
  upstreamProtocol: r(451, '4.5.0', 'Next hop protocol error, try again later'),
  messageAborted: r(451, '4.3.2', 'Previous message was not relayed; please reconnect'),
  locked: r(451, '4.7.1', 'Service temporarily refused for your host'),
} as const;
