/**
 * Lexer for rule files. Tokens: words (names, numbers with units, addresses, CIDR prefixes), "strings",
 * /regexes/flags, and punctuation. `#` starts a comment to the end of the line. Newlines separate nothing
 * by themselves: declarations start with a keyword (`list`, `rule`, `test`).
 * Never throws: problems become diagnostics and the lexer skips ahead.
 */
import type { DiagnosticSink, SourceFile, Span } from './rule-source.js';

export type TokenKind = 'word' | 'string' | 'regex' | 'punct' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** word: the word; string: the unescaped value; regex: the pattern; punct: the operator. */
  readonly value: string;
  /** Regex flags. */
  readonly flags?: string;
  readonly span: Span;
  /** 1-based line of the token's first character (also in span), kept for statement splitting in tests. */
  readonly line: number;
}

/** Longest string or regex literal accepted (a rule file is written by people). */
export const MAX_LITERAL = 8192;
/** Most tokens in one file; past this the file is refused (bounded work on hostile input). */
export const MAX_TOKENS = 2_000_000;

const PUNCT2 = ['=>', '==', '!=', '!~', '<=', '>='] as const;
const PUNCT1 = ['(', ')', ',', ';', '{', '}', ':', '~', '<', '>', '='] as const;
const WORD_STOP = new Set([' ', '\t', '\r', '\n', '\f', '\v', '(', ')', ',', ';', '{', '}', '"', '=', '<', '>', '!', '~', '#']);

export function lex(src: SourceFile, sink: DiagnosticSink): Token[] {
  const text = src.text;
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const span = (start: number, end: number, startLine = line, startLineStart = lineStart): Span => ({
    file: src.file,
    line: startLine,
    column: start - startLineStart + 1,
    length: Math.max(1, end - start),
  });
  const n = text.length;
  while (i < n) {
    if (out.length >= MAX_TOKENS) {
      sink.error('rule/too-large', `the file has more than ${MAX_TOKENS} tokens`, span(i, i + 1));
      break;
    }
    const c = text[i] as string;
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const start = i;
    if (c === '"') {
      const r = readQuoted(text, i, '"');
      const sp = span(start, Math.min(r.end, lineEndOf(text, start)));
      if (r.error) sink.error('rule/bad-string', r.error, sp, r.hint);
      else if (r.value.length > MAX_LITERAL) sink.error('rule/bad-string', `string is longer than ${MAX_LITERAL} characters`, sp);
      out.push({ kind: 'string', value: r.value, span: sp, line });
      i = r.end;
      continue;
    }
    if (c === '/') {
      const r = readRegex(text, i);
      const sp = span(start, Math.min(r.end, lineEndOf(text, start)));
      if (r.error) sink.error('rule/bad-regex', r.error, sp, r.hint);
      else if (r.pattern.length > MAX_LITERAL) sink.error('rule/bad-regex', `regex is longer than ${MAX_LITERAL} characters`, sp);
      out.push({ kind: 'regex', value: r.pattern, flags: r.flags, span: sp, line });
      i = r.end;
      continue;
    }
    const two = text.slice(i, i + 2);
    if ((PUNCT2 as readonly string[]).includes(two)) {
      out.push({ kind: 'punct', value: two, span: span(i, i + 2), line });
      i += 2;
      continue;
    }
    if ((PUNCT1 as readonly string[]).includes(c) && !(c === ':' && text[i + 1] === ':')) {
      out.push({ kind: 'punct', value: c, span: span(i, i + 1), line });
      i++;
      continue;
    }
    if (c === '!') {
      sink.error('rule/unexpected-char', 'unexpected "!"', span(i, i + 1), 'use `not` to negate a condition, `!=` or `!~` to compare');
      i++;
      continue;
    }
    // A word: anything up to whitespace or punctuation. "connect:" splits its trailing colon off
    // (but "2001:db8::" keeps its double colon).
    let j = i;
    while (j < n && !WORD_STOP.has(text[j] as string)) j++;
    let word = text.slice(i, j);
    let colonAfter = false;
    if (word.length > 1 && word.endsWith(':') && !word.endsWith('::')) {
      word = word.slice(0, -1);
      colonAfter = true;
    }
    if (word.length > MAX_LITERAL) sink.error('rule/bad-word', `word is longer than ${MAX_LITERAL} characters`, span(i, j));
    out.push({ kind: 'word', value: word, span: span(i, i + word.length), line });
    if (colonAfter) out.push({ kind: 'punct', value: ':', span: span(j - 1, j), line });
    i = j;
  }
  out.push({ kind: 'eof', value: '', span: span(n, n + 1), line });
  return out;
}

function lineEndOf(text: string, from: number): number {
  const e = text.indexOf('\n', from);
  return e < 0 ? text.length : e;
}

interface Quoted {
  value: string;
  end: number;
  error?: string;
  hint?: string;
}

/** Reads "..." with escapes \" \\ \n \t; a string may not span lines. */
function readQuoted(text: string, start: number, quote: string): Quoted {
  let i = start + 1;
  let value = '';
  while (i < text.length) {
    const c = text[i] as string;
    if (c === quote) return { value, end: i + 1 };
    if (c === '\n') return { value, end: i, error: 'unterminated string', hint: 'close the string with " on the same line' };
    if (c === '\\') {
      const e = text[i + 1];
      if (e === undefined || e === '\n') return { value, end: i + 1, error: 'unterminated string', hint: 'a backslash cannot end a line' };
      const map: Record<string, string> = { n: '\n', t: '\t', '"': '"', '\\': '\\' };
      const m = map[e];
      if (m === undefined) return { value, end: skipToQuote(text, i, quote), error: `unknown escape \\${e} in string`, hint: 'known escapes: \\" \\\\ \\n \\t (write {{ and }} for literal braces in templates)' };
      value += m;
      i += 2;
      continue;
    }
    value += c;
    i++;
  }
  return { value, end: i, error: 'unterminated string', hint: 'close the string with "' };
}

function skipToQuote(text: string, from: number, quote: string): number {
  let i = from + 2;
  while (i < text.length && text[i] !== quote && text[i] !== '\n') i += text[i] === '\\' ? 2 : 1;
  return Math.min(text.length, text[i] === quote ? i + 1 : i);
}

interface RegexLit {
  pattern: string;
  flags: string;
  end: number;
  error?: string;
  hint?: string;
}

/** Reads /pattern/flags; a `/` inside [...] or escaped does not end it. Flags: i, s, m. */
function readRegex(text: string, start: number): RegexLit {
  let i = start + 1;
  let inClass = false;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') return { pattern: text.slice(start + 1, i), flags: '', end: i, error: 'unterminated regex', hint: 'end the regex with / on the same line' };
    if (c === '\\') {
      i += 2;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    else if (c === '/' && !inClass) break;
    i++;
  }
  if (i >= text.length) return { pattern: text.slice(start + 1), flags: '', end: text.length, error: 'unterminated regex', hint: 'end the regex with /' };
  const pattern = text.slice(start + 1, i);
  i++;
  let flags = '';
  while (i < text.length && /[A-Za-z]/.test(text[i] as string)) flags += text[i++];
  const bad = [...flags].find((f) => !'ism'.includes(f));
  if (bad !== undefined) return { pattern, flags: '', end: i, error: `unknown regex flag "${bad}"`, hint: 'flags: i (ignore case), s (. matches newline), m (^ and $ at line ends)' };
  if (new Set(flags).size !== flags.length) return { pattern, flags: '', end: i, error: 'repeated regex flag' };
  return { pattern, flags, end: i };
}
