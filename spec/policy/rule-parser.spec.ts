import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DiagnosticsError } from '../../lib/core/errors.js';
import { compileRules } from '../../lib/policy/index.js';
import { lex } from '../../lib/policy/rule-lexer.js';
import { parseRules } from '../../lib/policy/rule-parser.js';
import { DiagnosticSink, SourceFile } from '../../lib/policy/rule-source.js';
import type { ExprNode, RuleNode } from '../../lib/policy/rule-ast.js';

function tokens(text: string): string[] {
  const sink = new DiagnosticSink();
  const src = new SourceFile('t', text);
  sink.addFile(src);
  const toks = lex(src, sink);
  assert.deepEqual(sink.items, []);
  return toks.map((t) => `${t.kind}:${t.value}${t.flags ? '/' + t.flags : ''}`);
}

function parse(text: string) {
  const sink = new DiagnosticSink();
  const src = new SourceFile('t', text);
  sink.addFile(src);
  const decls = parseRules(src, sink);
  assert.deepEqual(sink.items, []);
  return decls;
}

function show(e: ExprNode): string {
  switch (e.kind) {
    case 'and':
    case 'or':
      return `(${e.items.map(show).join(` ${e.kind} `)})`;
    case 'not':
      return `not ${show(e.expr)}`;
    case 'cmp':
      return `[${e.field.name}${e.field.arg !== undefined ? `(${e.field.arg})` : ''} ${e.op} ${e.value.kind}]`;
    case 'pred':
      return `[${e.field.name}${e.pred ? ' ' + e.pred : ''}]`;
  }
}

describe('policy/rule-lexer', () => {
  it('splits words, strings, regexes and operators; comments are skipped', () => {
    assert.deepEqual(tokens('rule a-b at helo: helo ~ /^x\\/y[/]$/i # comment\n=> reject 550 5.7.1 "t\\"x"'), [
      'word:rule', 'word:a-b', 'word:at', 'word:helo', 'punct::', 'word:helo', 'punct:~', 'regex:^x\\/y[/]$/i',
      'punct:=>', 'word:reject', 'word:550', 'word:5.7.1', 'string:t"x', 'eof:',
    ]);
  });
  it('keeps IPv6 addresses and prefixes whole but splits a stage colon', () => {
    assert.deepEqual(tokens('list a = ::1, 2001:db8::/32, fe80::, 10.0.0.0/8\nrule x at connect:'), [
      'word:list', 'word:a', 'punct:=', 'word:::1', 'punct:,', 'word:2001:db8::/32', 'punct:,', 'word:fe80::', 'punct:,', 'word:10.0.0.0/8',
      'word:rule', 'word:x', 'word:at', 'word:connect', 'punct::', 'eof:',
    ]);
  });
  it('reads two-character operators', () => {
    assert.deepEqual(tokens('a == b != c !~ d <= e >= f < g > h'), [
      'word:a', 'punct:==', 'word:b', 'punct:!=', 'word:c', 'punct:!~', 'word:d', 'punct:<=', 'word:e', 'punct:>=', 'word:f', 'punct:<', 'word:g', 'punct:>', 'word:h', 'eof:',
    ]);
  });
});

describe('policy/rule-parser', () => {
  it('gives not > and > or precedence, with parentheses', () => {
    const [r] = parse('rule a at mail: not authenticated and client in l or sender ~ /x/ and (helo == "a" or tls) => reject') as RuleNode[];
    assert.equal(show(r?.condition as ExprNode), '((not [authenticated] and [client in listref]) or ([sender ~ regex] and ([helo == string] or [tls])))');
  });
  it('parses predicates, function fields and inline lists', () => {
    const [r] = parse('rule a at eom: dnsbl(zen) failed or header("X-Spam") exists or client is not locked or rcpts not in (a, "b") or scanner failed => tag x') as RuleNode[];
    assert.equal(show(r?.condition as ExprNode), '([dnsbl failed] or [header exists] or not [client locked] or [rcpts not in inline] or [scanner failed])');
  });
  it('parses every action', () => {
    const [r] = parse('rule a at eom: => reject 554 5.7.1 "x" add header "X-A" "v" lock auth 2h reason "R" hook h tag t, quarantine "q"') as RuleNode[];
    assert.deepEqual(r?.actions.map((a) => a.kind), ['reject', 'add-header', 'lock', 'hook', 'tag', 'quarantine']);
  });
  it('a rule may span lines; declarations need no separator', () => {
    const decls = parse('rule a at helo:\n  helo == "x"\n  => reject\nrule b at helo: => accept\nlist l = a,\n  b\ntest "t" {\n  helo "x"\n  expect reject at helo\n}');
    assert.deepEqual(decls.map((d) => d.kind), ['rule', 'rule', 'list', 'test']);
  });
});

describe('policy/rule-compiler robustness (property)', () => {
  const ALPHABET = ['rule', 'list', 'test', ' at ', 'helo', 'client', 'in', '~', '/a+/', '"x"', '=>', 'reject', '550', '{', '}', '(', ')', ':', ',', ';', '\n', 'not', 'and', 'or', '==', '!', '#', '\\', '"', '/', '10.0.0.0/8', '::1', 'lock', '1h', 'header', 'add', '{x}'];
  const soup = fc.array(fc.constantFrom(...ALPHABET), { maxLength: 60 }).map((a) => a.join(' '));

  function compileOnly(text: string): void {
    try {
      compileRules([{ file: 'p.rules', text }]);
    } catch (e) {
      if (!(e instanceof DiagnosticsError)) throw e;
      for (const d of e.diagnostics) assert.ok(d.code.startsWith('rule/'), d.code);
    }
  }

  it('no token soup makes the compiler throw anything but DiagnosticsError', () => {
    fc.assert(fc.property(soup, (text) => compileOnly(text)), { numRuns: 1500 });
  });

  it('no arbitrary string (unicode, control characters) makes it throw anything but DiagnosticsError, in bounded time', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (text) => {
        const t0 = performance.now();
        compileOnly(text);
        assert.ok(performance.now() - t0 < 500);
      }),
      { numRuns: 1500 },
    );
  });

  it('deeply nested input is refused with a diagnostic, not a stack overflow', () => {
    compileOnly('rule a at helo: ' + '('.repeat(100_000) + 'tls' + ')'.repeat(100_000) + ' => reject');
    compileOnly('rule a at helo: ' + 'not '.repeat(100_000) + 'tls => reject');
    const t0 = performance.now();
    compileOnly('rule a at helo: tls' + ' or tls'.repeat(20_000) + ' => reject');
    assert.ok(performance.now() - t0 < 5000);
  });
});
