/**
 * Parser for rule files:
 *
 *   list NAME = item, item, ...            list NAME = file "path"
 *   rule NAME at STAGE: CONDITION => ACTION ACTION ...
 *   rule NAME at STAGE: => ACTION ...      (no condition: always)
 *   test "name" { statement; statement ... }   (statements end at ; or the end of the line)
 *
 * CONDITION: `or` of `and` of [not] terms; a term is (CONDITION), FIELD OP VALUE, FIELD [not] in LIST,
 * FIELD is [not] locked, FIELD failed|skipped|exists|listed, or a FIELD alone (true/false fields).
 * On an error the parser reports it and skips to the next declaration, so one run reports every broken rule.
 */
import type { ActionNode, CmpOp, DeclNode, ExprNode, FieldRef, ItemNode, ListNode, RuleNode, TestNode, TestStatement, ValueNode } from './rule-ast.js';
import { lex, type Token } from './rule-lexer.js';
import type { DiagnosticSink, SourceFile, Span } from './rule-source.js';

const TOP = new Set(['rule', 'list', 'test']);
const ACTIONS = new Set(['accept', 'reject', 'tempfail', 'discard', 'quarantine', 'add', 'insert', 'remove', 'lock', 'hook', 'tag']);
const CMP = new Set(['==', '!=', '~', '!~', '<', '<=', '>', '>=']);
const POSTFIX = new Set(['failed', 'skipped', 'exists', 'listed']);
/** Deepest nesting of parentheses / not (bounded recursion on hostile input). */
const MAX_DEPTH = 64;
/** Most and/or terms in one condition. */
const MAX_TERMS = 1000;

class ParseError extends Error {}

export function parseRules(src: SourceFile, sink: DiagnosticSink): DeclNode[] {
  const before = sink.items.length;
  const toks = lex(src, sink);
  // A syntax error on a line the lexer already complained about is a consequence, not news.
  const lexLines = new Set(sink.items.slice(before).map((d) => d.location?.line ?? 0));
  return new Parser(toks, sink, lexLines).parseFile();
}

class Parser {
  private pos = 0;
  private depth = 0;
  private terms = 0;
  constructor(private readonly toks: Token[], private readonly sink: DiagnosticSink, private readonly lexLines: ReadonlySet<number>) {}

  private peek(k = 0): Token {
    return this.toks[Math.min(this.pos + k, this.toks.length - 1)] as Token;
  }
  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.pos++;
    return t;
  }
  private isWord(v: string, k = 0): boolean {
    const t = this.peek(k);
    return t.kind === 'word' && t.value === v;
  }
  private isPunct(v: string, k = 0): boolean {
    const t = this.peek(k);
    return t.kind === 'punct' && t.value === v;
  }
  private fail(code: string, message: string, span: Span, hint?: string): never {
    if (!this.lexLines.has(span.line)) this.sink.error(code, message, span, hint);
    throw new ParseError(message);
  }
  private describe(t: Token): string {
    if (t.kind === 'eof') return 'the end of the file';
    if (t.kind === 'string') return `"${t.value.slice(0, 40)}"`;
    if (t.kind === 'regex') return `/${t.value.slice(0, 40)}/`;
    return `"${t.value.slice(0, 40)}"`;
  }
  private expectPunct(v: string, hint?: string): Token {
    const t = this.peek();
    if (t.kind === 'punct' && t.value === v) return this.next();
    return this.fail('rule/syntax', `expected "${v}" but found ${this.describe(t)}`, t.span, hint);
  }
  private expectWord(what: string, hint?: string): Token {
    const t = this.peek();
    if (t.kind === 'word') return this.next();
    return this.fail('rule/syntax', `expected ${what} but found ${this.describe(t)}`, t.span, hint);
  }
  private join(a: Span, b: Span): Span {
    if (a.line !== b.line || a.file !== b.file) return a;
    return { ...a, length: Math.max(1, b.column + b.length - a.column) };
  }
  private prevSpan(): Span {
    return (this.toks[Math.max(0, this.pos - 1)] as Token).span;
  }

  parseFile(): DeclNode[] {
    const decls: DeclNode[] = [];
    while (this.peek().kind !== 'eof') {
      const t = this.peek();
      try {
        if (this.isWord('rule')) decls.push(this.parseRule());
        else if (this.isWord('list')) decls.push(this.parseList());
        else if (this.isWord('test')) decls.push(this.parseTest());
        else this.fail('rule/syntax', `expected "rule", "list" or "test" but found ${this.describe(t)}`, t.span, 'every declaration starts with rule, list or test');
      } catch (e) {
        if (!(e instanceof ParseError)) throw e;
        this.recover(t);
      }
    }
    return decls;
  }

  /** Skips to the next top-level keyword after `from` (at least one token). */
  private recover(from: Token): void {
    if (this.peek() === from) this.next();
    while (this.peek().kind !== 'eof') {
      const t = this.peek();
      if (t.kind === 'word' && TOP.has(t.value) && (this.peek(1).kind === 'word' || this.peek(1).kind === 'string')) return;
      this.next();
    }
  }

  private parseList(): ListNode {
    const kw = this.next();
    const name = this.expectWord('a list name', 'list NAME = item, item, ...');
    this.expectPunct('=', 'list NAME = item, item, ...   or   list NAME = file "path"');
    if (this.isWord('file') && this.peek(1).kind === 'string') {
      this.next();
      const f = this.next();
      return { kind: 'list', name: name.value, nameSpan: name.span, items: [], file: { value: f.value, span: f.span }, span: this.join(kw.span, f.span) };
    }
    const items = this.parseItems('list');
    return { kind: 'list', name: name.value, nameSpan: name.span, items, span: this.join(kw.span, this.prevSpan()) };
  }

  /** item, item, ... (words or strings). */
  private parseItems(what: string): ItemNode[] {
    const items: ItemNode[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'word' || t.kind === 'string') {
        if (t.kind === 'word' && TOP.has(t.value) && items.length > 0) break;
        this.next();
        items.push({ text: t.value, quoted: t.kind === 'string', span: t.span });
      } else {
        this.fail('rule/syntax', `expected a ${what} entry but found ${this.describe(t)}`, t.span, 'entries are words (192.0.2.0/24, example.com) or "quoted strings", separated by commas');
      }
      if (!this.isPunct(',')) break;
      this.next();
    }
    return items;
  }

  private parseRule(): RuleNode {
    const kw = this.next();
    const name = this.expectWord('a rule name', 'rule NAME at STAGE: CONDITION => ACTION');
    if (!this.isWord('at')) this.fail('rule/syntax', `expected "at STAGE" after the rule name but found ${this.describe(this.peek())}`, this.peek().span, 'rule NAME at STAGE: CONDITION => ACTION');
    this.next();
    const stage = this.expectWord('a stage', 'stages: connect, helo, auth, mail, rcpt, data, header, eoh, eom');
    this.expectPunct(':', 'rule NAME at STAGE: CONDITION => ACTION');
    let condition: ExprNode | undefined;
    this.terms = 0;
    if (!this.isPunct('=>')) condition = this.parseOr();
    this.expectPunct('=>', 'the condition ends with => followed by the actions');
    const actions: ActionNode[] = [];
    while (this.peek().kind !== 'eof' && !(this.peek().kind === 'word' && TOP.has(this.peek().value))) {
      actions.push(this.parseAction());
      if (this.isPunct(',')) this.next();
    }
    if (actions.length === 0) this.fail('rule/syntax', 'a rule needs at least one action after =>', this.peek().span, 'actions: accept, reject, tempfail, discard, quarantine, add header, insert header, remove header, lock, hook, tag');
    return { kind: 'rule', name: name.value, nameSpan: name.span, stage: stage.value, stageSpan: stage.span, ...(condition ? { condition } : {}), actions, span: this.join(kw.span, name.span) };
  }

  private parseOr(): ExprNode {
    const first = this.parseAnd();
    if (!this.isWord('or')) return first;
    const items = [first];
    while (this.isWord('or')) {
      const t = this.next();
      if (++this.terms > MAX_TERMS) this.fail('rule/too-complex', `a condition may have at most ${MAX_TERMS} terms`, t.span, 'use a list: field in LIST');
      items.push(this.parseAnd());
    }
    return { kind: 'or', items, span: first.span };
  }

  private parseAnd(): ExprNode {
    const first = this.parseNot();
    if (!this.isWord('and')) return first;
    const items = [first];
    while (this.isWord('and')) {
      const t = this.next();
      if (++this.terms > MAX_TERMS) this.fail('rule/too-complex', `a condition may have at most ${MAX_TERMS} terms`, t.span, 'split the rule');
      items.push(this.parseNot());
    }
    return { kind: 'and', items, span: first.span };
  }

  private parseNot(): ExprNode {
    if (++this.depth > MAX_DEPTH) this.fail('rule/too-deep', `conditions nest more than ${MAX_DEPTH} levels`, this.peek().span);
    try {
      if (this.isWord('not')) {
        const t = this.next();
        const expr = this.parseNot();
        return { kind: 'not', expr, span: this.join(t.span, expr.span) };
      }
      if (this.isPunct('(')) {
        this.next();
        const e = this.parseOr();
        this.expectPunct(')', 'close the parenthesis');
        return e;
      }
      return this.parseTerm();
    } finally {
      this.depth--;
    }
  }

  private parseField(): FieldRef {
    const t = this.peek();
    if (t.kind !== 'word') {
      this.fail('rule/syntax', `expected a condition but found ${this.describe(t)}`, t.span, 'a condition looks like `helo ~ /regex/`, `client in LIST`, `size > 10MB` or `authenticated`');
    }
    if (t.value === 'and' || t.value === 'or') this.fail('rule/syntax', `expected a condition before "${t.value}"`, t.span);
    this.next();
    if (this.isPunct('(')) {
      this.next();
      const a = this.peek();
      if (a.kind !== 'word' && a.kind !== 'string') this.fail('rule/syntax', `expected an argument for ${t.value}(...) but found ${this.describe(a)}`, a.span, `e.g. header("Subject"), dnsbl(zen), scanner(clamd)`);
      this.next();
      const close = this.expectPunct(')', `close ${t.value}(...)`);
      return { name: t.value, arg: a.value, span: this.join(t.span, close.span) };
    }
    return { name: t.value, span: t.span };
  }

  private parseTerm(): ExprNode {
    const field = this.parseField();
    const t = this.peek();
    if (t.kind === 'punct' && CMP.has(t.value)) {
      this.next();
      const value = this.parseValue(t.value as CmpOp);
      return { kind: 'cmp', field, op: t.value as CmpOp, opSpan: t.span, value, span: this.join(field.span, value.span) };
    }
    if (t.kind === 'punct' && t.value === '=') {
      this.fail('rule/syntax', 'a single "=" is not a comparison', t.span, 'write == to compare');
    }
    if (this.isWord('in') || (this.isWord('not') && this.isWord('in', 1))) {
      const neg = this.isWord('not');
      if (neg) this.next();
      const opTok = this.next();
      const value = this.parseListValue();
      return { kind: 'cmp', field, op: neg ? 'not in' : 'in', opSpan: opTok.span, value, span: this.join(field.span, value.span) };
    }
    if (this.isWord('is')) {
      this.next();
      let neg = false;
      if (this.isWord('not')) {
        this.next();
        neg = true;
      }
      const l = this.peek();
      if (!(l.kind === 'word' && l.value === 'locked')) this.fail('rule/syntax', `expected "locked" after "is" but found ${this.describe(l)}`, l.span, '`client is locked` or `auth is locked`');
      this.next();
      const e: ExprNode = { kind: 'pred', field, pred: 'locked', span: this.join(field.span, l.span) };
      return neg ? { kind: 'not', expr: e, span: e.span } : e;
    }
    if (t.kind === 'word' && POSTFIX.has(t.value)) {
      this.next();
      return { kind: 'pred', field, pred: t.value as 'failed' | 'skipped' | 'exists' | 'listed', span: this.join(field.span, t.span) };
    }
    return { kind: 'pred', field, span: field.span };
  }

  private parseValue(op: CmpOp): ValueNode {
    const t = this.peek();
    if (t.kind === 'regex') {
      this.next();
      return { kind: 'regex', pattern: t.value, flags: t.flags ?? '', span: t.span };
    }
    if (t.kind === 'string') {
      this.next();
      return { kind: 'string', text: t.value, span: t.span };
    }
    if (t.kind === 'word' && t.value !== 'and' && t.value !== 'or') {
      this.next();
      return { kind: 'word', text: t.value, span: t.span };
    }
    return this.fail('rule/syntax', `expected a value after "${op}" but found ${this.describe(t)}`, t.span, op === '~' || op === '!~' ? 'a regex is written /pattern/ (flags after the last slash: /x/i)' : 'a value is a word, a number (10MB, 1h) or a "string"');
  }

  private parseListValue(): ValueNode {
    const t = this.peek();
    if (t.kind === 'punct' && t.value === '(') {
      this.next();
      const items = this.parseItems('list');
      const close = this.expectPunct(')', 'close the inline list');
      return { kind: 'inline', items, span: this.join(t.span, close.span) };
    }
    if (t.kind === 'word') {
      this.next();
      return { kind: 'listref', name: t.value, span: t.span };
    }
    return this.fail('rule/syntax', `expected a list name or (a, b, ...) after "in" but found ${this.describe(t)}`, t.span);
  }

  private optString(): { value: string; span: Span } | undefined {
    const t = this.peek();
    if (t.kind !== 'string') return undefined;
    this.next();
    return { value: t.value, span: t.span };
  }

  private parseAction(): ActionNode {
    const t = this.peek();
    if (t.kind !== 'word' || !ACTIONS.has(t.value)) {
      this.fail('rule/unknown-action', `expected an action but found ${this.describe(t)}`, t.span, 'actions: accept, reject, tempfail, discard, quarantine, add header, insert header, remove header, lock, hook, tag');
    }
    this.next();
    switch (t.value) {
      case 'accept':
      case 'discard':
        return { kind: t.value, span: t.span };
      case 'reject':
      case 'tempfail': {
        let code: { value: string; span: Span } | undefined;
        let enhanced: { value: string; span: Span } | undefined;
        const c = this.peek();
        if (c.kind === 'word' && /^\d+$/.test(c.value)) {
          this.next();
          code = { value: c.value, span: c.span };
          const e = this.peek();
          if (e.kind === 'word' && /^\d+\.\d+\.\d+$|^\d+\./.test(e.value)) {
            this.next();
            enhanced = { value: e.value, span: e.span };
          }
        }
        const text = this.optString();
        return { kind: t.value, ...(code ? { code } : {}), ...(enhanced ? { enhanced } : {}), ...(text ? { text } : {}), span: this.join(t.span, this.prevSpan()) };
      }
      case 'quarantine': {
        const text = this.optString();
        return { kind: 'quarantine', ...(text ? { text } : {}), span: t.span };
      }
      case 'add':
      case 'insert':
      case 'remove': {
        const h = this.peek();
        const usage = t.value === 'remove' ? 'remove header "Name"' : `${t.value} header "Name" "value with {variables}"`;
        if (!(h.kind === 'word' && h.value === 'header')) this.fail('rule/syntax', `expected "header" after "${t.value}" but found ${this.describe(h)}`, h.span, usage);
        this.next();
        const name = this.optString() ?? this.fail('rule/syntax', `expected the header name as a "string" but found ${this.describe(this.peek())}`, this.peek().span, usage);
        if (t.value === 'remove') return { kind: 'remove-header', name, span: this.join(t.span, name.span) };
        const value = this.optString() ?? this.fail('rule/syntax', `expected the header value as a "string" but found ${this.describe(this.peek())}`, this.peek().span, usage);
        return { kind: 'add-header', name, value, ...(t.value === 'insert' ? { first: true } : {}), span: this.join(t.span, value.span) };
      }
      case 'lock': {
        let subject: 'client' | 'auth' = 'client';
        if (this.isWord('client') || this.isWord('auth')) subject = this.next().value as 'client' | 'auth';
        const d = this.expectWord('a lock duration', 'lock [client|auth] DURATION [reason "text"], e.g. lock 1h reason "REGEX_HELO"');
        let reason: { value: string; span: Span } | undefined;
        if (this.isWord('reason')) {
          this.next();
          reason = this.optString() ?? this.fail('rule/syntax', `expected the lock reason as a "string" but found ${this.describe(this.peek())}`, this.peek().span);
        }
        return { kind: 'lock', subject, duration: { value: d.value, span: d.span }, ...(reason ? { reason } : {}), span: this.join(t.span, this.prevSpan()) };
      }
      case 'hook': {
        const n = this.peek();
        if (n.kind !== 'word' && n.kind !== 'string') this.fail('rule/syntax', `expected a hook name but found ${this.describe(n)}`, n.span, 'hook NAME (a hook configured in sluice.yaml)');
        this.next();
        return { kind: 'hook', name: n.value, span: n.span };
      }
      default: {
        const n = this.peek();
        if (n.kind !== 'word' && n.kind !== 'string') this.fail('rule/syntax', `expected a tag but found ${this.describe(n)}`, n.span, 'tag NAME');
        this.next();
        return { kind: 'tag', name: n.value, span: n.span };
      }
    }
  }

  private parseTest(): TestNode {
    const kw = this.next();
    const name = this.peek();
    if (name.kind !== 'string' && name.kind !== 'word') this.fail('rule/syntax', `expected the test name as a "string" but found ${this.describe(name)}`, name.span, 'test "what it checks" { ... }');
    this.next();
    this.expectPunct('{', 'test "name" { client 192.0.2.1; helo "x"; expect reject 550 at helo }');
    const statements: TestStatement[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'eof') this.fail('rule/syntax', 'unterminated test block', kw.span, 'close the test block with }');
      if (t.kind === 'punct' && t.value === '}') {
        this.next();
        break;
      }
      if (t.kind === 'punct' && t.value === ';') {
        this.next();
        continue;
      }
      if (t.kind !== 'word') this.fail('rule/syntax', `expected a test statement but found ${this.describe(t)}`, t.span, 'statements: client, helo, auth, sender, rcpt, header, size, spf, dnsbl, virus, spam, locked, expect ...');
      this.next();
      const args: { text: string; quoted: boolean; kind: 'word' | 'string' | 'regex' | 'punct'; flags?: string; span: Span }[] = [];
      while (this.peek().kind !== 'eof' && this.peek().line === t.line && !this.isPunct(';') && !this.isPunct('}')) {
        const a = this.next();
        args.push({ text: a.value, quoted: a.kind === 'string', kind: a.kind as 'word' | 'string' | 'regex' | 'punct', ...(a.flags ? { flags: a.flags } : {}), span: a.span });
      }
      statements.push({ keyword: t.value, args, span: t.span });
    }
    return { kind: 'test', name: name.value, statements, span: kw.span };
  }
}
