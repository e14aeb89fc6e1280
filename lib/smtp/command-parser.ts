/**
 * SMTP command parser (RFC 5321 §4.1, RFC 1870 SIZE, RFC 6152 BODY, RFC 4954 AUTH).
 * Liberal but bounded: verbs are case-insensitive, "MAIL FROM: <a>" (space after the colon) and bare addresses are
 * accepted, parameters are KEY[=VALUE] pairs. Never throws on peer input: problems come back as `{ verb: 'INVALID' }`.
 */

import { isUtf8 } from 'node:buffer';

/** Verbs the intercept door handles by name. Anything else is `OTHER` and carries its verb. */
export const SMTP_VERBS = {
  HELO: 'HELO', // RFC 5321 §4.1.1.1
  EHLO: 'EHLO', // RFC 5321 §4.1.1.1
  MAIL: 'MAIL', // RFC 5321 §4.1.1.2
  RCPT: 'RCPT', // RFC 5321 §4.1.1.3
  DATA: 'DATA', // RFC 5321 §4.1.1.4
  RSET: 'RSET', // RFC 5321 §4.1.1.5
  VRFY: 'VRFY', // RFC 5321 §4.1.1.6
  EXPN: 'EXPN', // RFC 5321 §4.1.1.7
  HELP: 'HELP', // RFC 5321 §4.1.1.8
  NOOP: 'NOOP', // RFC 5321 §4.1.1.9
  QUIT: 'QUIT', // RFC 5321 §4.1.1.10
  AUTH: 'AUTH', // RFC 4954
  STARTTLS: 'STARTTLS', // RFC 3207
  BDAT: 'BDAT', // RFC 3030 CHUNKING
  XCLIENT: 'XCLIENT', // Postfix XCLIENT_README
  XFORWARD: 'XFORWARD', // Postfix XFORWARD_README
  XEXCH50: 'XEXCH50', // Microsoft Exchange
  ETRN: 'ETRN', // RFC 1985
} as const;

/** Most ESMTP parameters we keep from one MAIL/RCPT command. */
export const MAX_PARAMS = 32;
/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets. We allow some slack for liberal parsing. */
export const MAX_PATH = 512;

export type SmtpCommand =
  | { readonly verb: 'HELO' | 'EHLO'; readonly name: string }
  | { readonly verb: 'MAIL' | 'RCPT'; readonly address: string; readonly params: Readonly<Record<string, string>> }
  | { readonly verb: 'AUTH'; readonly mechanism: string; readonly initial?: string }
  | { readonly verb: 'DATA' | 'RSET' | 'QUIT' | 'STARTTLS' | 'NOOP'; readonly arg: string }
  | { readonly verb: 'BDAT' | 'XCLIENT' | 'XFORWARD' | 'XEXCH50' | 'VRFY' | 'EXPN' | 'HELP' | 'ETRN'; readonly arg: string }
  | { readonly verb: 'OTHER'; readonly name: string; readonly arg: string }
  | { readonly verb: 'INVALID'; readonly problem: string };

const SIMPLE = new Set(['DATA', 'RSET', 'QUIT', 'STARTTLS', 'NOOP', 'BDAT', 'XCLIENT', 'XFORWARD', 'XEXCH50', 'VRFY', 'EXPN', 'HELP', 'ETRN']);

/**
 * 'bare CR' or 'NUL' when a command line (its ending removed) holds one, else undefined. Such a line is never
 * passed on: a server might end the line at the CR, or the string at the NUL, where we did not.
 */
export function strayByte(line: Buffer): 'bare CR' | 'NUL' | undefined {
  if (line.indexOf(0x0d) !== -1) return 'bare CR';
  if (line.indexOf(0x00) !== -1) return 'NUL';
  return undefined;
}

/** Parses one command line (without its CRLF). Accepts a Buffer (decoded as latin1, byte-preserving) or a string. */
export function parseCommand(input: Buffer | string): SmtpCommand {
  // SMTPUTF8 (RFC 6531) addresses arrive as UTF-8; anything else is read byte for byte.
  const line = typeof input === 'string' ? input : isUtf8(input) ? input.toString('utf8') : input.toString('latin1');
  const m = /^[ \t]*([A-Za-z][A-Za-z0-9-]{0,31})(?:[ \t]+(.*))?$/s.exec(line);
  if (!m) return { verb: 'INVALID', problem: line.trim() === '' ? 'empty command' : 'malformed command verb' };
  const verb = (m[1] ?? '').toUpperCase();
  const arg = (m[2] ?? '').replace(/[ \t]+$/, '');
  switch (verb) {
    case 'HELO':
    case 'EHLO': {
      const name = arg.split(/[ \t]+/)[0] ?? '';
      if (name === '') return { verb: 'INVALID', problem: `${verb} needs a domain or address literal` };
      return { verb, name };
    }
    case 'MAIL':
    case 'RCPT':
      return parsePathCommand(verb, arg);
    case 'AUTH': {
      const parts = arg.split(/[ \t]+/).filter((p) => p !== '');
      const mech = parts[0];
      if (mech === undefined || !/^[A-Za-z0-9_-]{1,20}$/.test(mech)) return { verb: 'INVALID', problem: 'AUTH needs a SASL mechanism' };
      return parts[1] !== undefined ? { verb: 'AUTH', mechanism: mech.toUpperCase(), initial: parts[1] } : { verb: 'AUTH', mechanism: mech.toUpperCase() };
    }
    default:
      if (SIMPLE.has(verb)) return { verb, arg } as SmtpCommand;
      return { verb: 'OTHER', name: verb, arg };
  }
}

function parsePathCommand(verb: 'MAIL' | 'RCPT', arg: string): SmtpCommand {
  const keyword = verb === 'MAIL' ? 'FROM' : 'TO';
  const km = new RegExp(`^${keyword}[ \\t]*:[ \\t]*`, 'i').exec(arg);
  if (!km) return { verb: 'INVALID', problem: `${verb} needs ${keyword}:<address>` };
  const rest = arg.slice(km[0].length);
  let address: string;
  let tail: string;
  if (rest.startsWith('<')) {
    const close = rest.indexOf('>');
    if (close === -1) return { verb: 'INVALID', problem: 'unterminated <address>' };
    address = rest.slice(1, close);
    tail = rest.slice(close + 1);
  } else {
    const sp = rest.search(/[ \t]/);
    address = sp === -1 ? rest : rest.slice(0, sp);
    tail = sp === -1 ? '' : rest.slice(sp);
  }
  // RFC 5321 §4.1.2: a source route (@a,@b:user@c) is accepted and ignored.
  const route = /^@[^:]*:/.exec(address);
  if (route) address = address.slice(route[0].length);
  if (address.length > MAX_PATH) return { verb: 'INVALID', problem: `address longer than ${MAX_PATH} characters` };
  if (/[\s<>]/.test(address)) return { verb: 'INVALID', problem: 'address contains spaces or angle brackets' };
  if (address === '' && verb === 'RCPT') return { verb: 'INVALID', problem: 'empty recipient' };
  if (tail !== '' && !/^[ \t]/.test(tail)) return { verb: 'INVALID', problem: 'garbage after address' };
  const params: Record<string, string> = {};
  let n = 0;
  for (const p of tail.split(/[ \t]+/)) {
    if (p === '') continue;
    if (++n > MAX_PARAMS) return { verb: 'INVALID', problem: `more than ${MAX_PARAMS} parameters` };
    const eq = p.indexOf('=');
    const key = (eq === -1 ? p : p.slice(0, eq)).toUpperCase();
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) return { verb: 'INVALID', problem: 'malformed parameter keyword' };
    params[key] = eq === -1 ? '' : p.slice(eq + 1);
  }
  if (params['SIZE'] !== undefined && !/^\d{1,15}$/.test(params['SIZE'])) return { verb: 'INVALID', problem: 'SIZE must be a number' };
  if (params['BODY'] !== undefined && !/^(7BIT|8BITMIME|BINARYMIME)$/i.test(params['BODY'])) return { verb: 'INVALID', problem: 'BODY must be 7BIT or 8BITMIME' };
  return { verb, address, params };
}

/** Renders a command back to wire form (used by tests and by doors that originate commands). */
export function formatCommand(cmd: SmtpCommand): string {
  switch (cmd.verb) {
    case 'HELO':
    case 'EHLO':
      return `${cmd.verb} ${cmd.name}\r\n`;
    case 'MAIL':
    case 'RCPT': {
      const ps = Object.entries(cmd.params).map(([k, v]) => (v === '' ? ` ${k}` : ` ${k}=${v}`)).join('');
      return `${cmd.verb} ${cmd.verb === 'MAIL' ? 'FROM' : 'TO'}:<${cmd.address}>${ps}\r\n`;
    }
    case 'AUTH':
      return `AUTH ${cmd.mechanism}${cmd.initial !== undefined ? ' ' + cmd.initial : ''}\r\n`;
    case 'OTHER':
      return `${cmd.name}${cmd.arg ? ' ' + cmd.arg : ''}\r\n`;
    case 'INVALID':
      throw new Error('cannot format an invalid command');
    default:
      return `${cmd.verb}${cmd.arg ? ' ' + cmd.arg : ''}\r\n`;
  }
}
