/**
 * SMTP reply parser (RFC 5321 §4.2: "250-text" continuation lines, "250 text" last line; RFC 2034/3463 enhanced
 * status codes). Feed it lines (from a LineReader); it returns a reply once the last line arrived.
 * Bounded: at most `maxLines` lines per reply. Never throws on peer input.
 */
import type { SmtpReply } from '../core/smtp-reply.js';

export interface ParsedReply extends SmtpReply {
  /** The exact lines as received, CRLF added, for relaying byte-for-byte. */
  readonly raw: string;
}

export type ReplyEvent =
  | { readonly kind: 'reply'; readonly reply: ParsedReply }
  | { readonly kind: 'error'; readonly problem: string };

export const MAX_REPLY_LINES = 200;
const LINE = /^([2-5][0-9][0-9])([ -]|$)(.*)$/s;
const ENH = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/;

export class ReplyParser {
  private lines: string[] = [];
  private raw = '';
  private code = 0;

  constructor(readonly maxLines = MAX_REPLY_LINES) {}

  /** True while a multi-line reply is incomplete. */
  get pending(): boolean {
    return this.lines.length > 0;
  }

  /** One reply line without its CRLF. Returns undefined while a multi-line reply continues. */
  pushLine(input: Buffer | string): ReplyEvent | undefined {
    const line = typeof input === 'string' ? input : input.toString('latin1');
    const m = LINE.exec(line);
    if (!m) {
      this.clear();
      return { kind: 'error', problem: 'reply line does not start with a three-digit code' };
    }
    const code = Number(m[1]);
    if (this.lines.length > 0 && code !== this.code) {
      this.clear();
      return { kind: 'error', problem: `reply code changed from ${this.code} to ${code} inside a multi-line reply` };
    }
    this.code = code;
    this.lines.push(m[3] ?? '');
    this.raw += line + '\r\n';
    if (m[2] === '-') {
      if (this.lines.length >= this.maxLines) {
        this.clear();
        return { kind: 'error', problem: `reply has more than ${this.maxLines} lines` };
      }
      return undefined;
    }
    const reply = buildReply(code, this.lines, this.raw);
    this.clear();
    return { kind: 'reply', reply };
  }

  clear(): void {
    this.lines = [];
    this.raw = '';
    this.code = 0;
  }
}

/** Splits off enhanced status codes when every line carries the same class as the code (RFC 2034 §4). */
function buildReply(code: number, texts: readonly string[], raw: string): ParsedReply {
  const first = ENH.exec(texts[0] ?? '');
  const cls = String(Math.floor(code / 100));
  if (first && first[1]?.startsWith(cls + '.')) {
    const enhanced = first[1];
    const lines = texts.map((t) => (t.startsWith(enhanced) ? t.slice(enhanced.length).replace(/^ /, '') : t));
    return { code, enhanced, lines, raw };
  }
  return { code, lines: [...texts], raw };
}

/** Parses a complete reply block ("250-a\r\n250 b\r\n"); for tests and one-shot callers. */
export function parseReply(text: string, maxLines = MAX_REPLY_LINES): ParsedReply | { readonly problem: string } {
  const p = new ReplyParser(maxLines);
  const lines = text.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const ev = p.pushLine(lines[i] ?? '');
    if (ev?.kind === 'error') return { problem: ev.problem };
    if (ev?.kind === 'reply') return i === lines.length - 1 ? ev.reply : { problem: 'text after the last reply line' };
  }
  return { problem: 'incomplete reply' };
}
