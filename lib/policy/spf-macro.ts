/**
 * SPF macro expansion (RFC 7208 §7), used for `exp=` explanations: mailauth expands the macros of
 * mechanisms itself, but takes %{d} from the sender rather than the domain being evaluated and does not
 * evaluate explanations at all. Errors are thrown as SpfMacroError (a syntax error means permerror, or, in
 * an explanation, no explanation).
 */
import { isIPv6 } from 'node:net';
import { expandIpv6 } from './dns-name.js';

export class SpfMacroError extends Error {
  override readonly name = 'SpfMacroError';
}

export interface SpfMacroContext {
  /** The full sender ("postmaster@helo" for the null sender). */
  readonly sender: string;
  /** The domain being evaluated (%{d}). */
  readonly domain: string;
  readonly ip: string;
  readonly helo: string;
  /** The receiving host (%{r}); "unknown" when not given. */
  readonly receiver?: string;
  /** %{p}: the validated client name, found lazily; "unknown" when none. */
  readonly validatedName?: () => Promise<string>;
  readonly now?: () => number;
}


/** RFC 3986 unreserved characters stay, everything else is %-escaped (RFC 7208 §7.3, upper-case letters). */
function urlEscape(s: string): string {
  return Array.from(Buffer.from(s, 'utf8'))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9\-._~]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
    })
    .join('');
}

async function letterValue(letter: string, ctx: SpfMacroContext, inExp: boolean): Promise<string> {
  const at = ctx.sender.lastIndexOf('@');
  switch (letter) {
    case 's':
      return ctx.sender;
    case 'l':
      return at > 0 ? ctx.sender.slice(0, at) : 'postmaster';
    case 'o':
      return at >= 0 ? ctx.sender.slice(at + 1) : ctx.sender;
    case 'd':
      return ctx.domain;
    case 'i':
      return isIPv6(ctx.ip) ? expandIpv6(ctx.ip, true).split('').join('.') : ctx.ip;
    case 'p':
      return ctx.validatedName ? await ctx.validatedName() : 'unknown';
    case 'v':
      return isIPv6(ctx.ip) ? 'ip6' : 'in-addr';
    case 'h':
      return ctx.helo;
    case 'c':
      if (!inExp) break;
      // RFC 7208 §7.3: the address in its conventional (RFC 5952) text form
      return isIPv6(ctx.ip) ? new URL(`http://[${ctx.ip}]/`).hostname.slice(1, -1) : ctx.ip;
    case 'r':
      if (!inExp) break;
      return ctx.receiver ?? 'unknown';
    case 't':
      if (!inExp) break;
      return String(Math.floor((ctx.now ?? Date.now)() / 1000));
  }
  throw new SpfMacroError(`unknown macro letter ${JSON.stringify(letter)}`);
}

/** Expands a macro-string; `inExp` allows the c, r and t letters (explanation strings only). */
export async function expandSpfMacros(input: string, ctx: SpfMacroContext, inExp: boolean): Promise<string> {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch !== '%') {
      out += ch;
      continue;
    }
    const next = input[i + 1];
    if (next === '%') out += '%';
    else if (next === '_') out += ' ';
    else if (next === '-') out += '%20';
    else if (next === '{') {
      const end = input.indexOf('}', i + 2);
      if (end < 0) throw new SpfMacroError('unterminated macro');
      const body = input.slice(i + 2, end);
      const m = /^([a-zA-Z])(\d*)(r?)([.\-+,/_=]*)$/.exec(body);
      if (!m || m[1] === undefined) throw new SpfMacroError(`bad macro ${JSON.stringify(body)}`);
      const letter = m[1];
      const digits = m[2] ?? '';
      if (digits !== '' && Number(digits) === 0) throw new SpfMacroError('macro digit transformer of zero');
      let value = await letterValue(letter.toLowerCase(), ctx, inExp);
      const delims = m[4] || '.';
      if (digits !== '' || m[3] === 'r' || delims !== '.') {
        const splitter = new RegExp('[' + delims.replace(/[-\\\]^]/g, '\\$&') + ']');
        let parts = value.split(splitter);
        if (m[3] === 'r') parts = parts.reverse();
        if (digits !== '') parts = parts.slice(-Math.min(Number(digits), 128));
        value = parts.join('.');
      }
      out += letter !== letter.toLowerCase() ? urlEscape(value) : value;
      i = end;
      continue;
    } else throw new SpfMacroError('lone % in macro-string');
    i++;
  }
  return out;
}

