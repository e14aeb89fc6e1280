import assert from 'node:assert/strict';
import { DiagnosticsError, formatDiagnostic, type Diagnostic } from '../../lib/core/errors.js';
import { compileRules, type CompileOptions } from '../../lib/policy/index.js';

function diags(text: string, opts: CompileOptions = {}): Diagnostic[] {
  try {
    compileRules([{ file: 'x.rules', text }], opts);
  } catch (e) {
    assert.ok(e instanceof DiagnosticsError, `expected DiagnosticsError, got ${String(e)}`);
    return [...e.diagnostics];
  }
  assert.fail('expected the rules to be refused');
}

/** The one diagnostic of `text`, as "line:col code message | hint". */
function one(text: string, opts: CompileOptions = {}): string {
  const d = diags(text, opts);
  assert.equal(d.length, 1, d.map(formatDiagnostic).join('\n'));
  const x = d[0] as Diagnostic;
  return `${x.location?.line}:${x.location?.column} ${x.code} ${x.message}${x.hint ? ` | ${x.hint}` : ''}`;
}

describe('policy/rule-checker diagnostics', () => {
  it('formats file:line:col, the source line, a caret under the offending text and the hint', () => {
    const d = diags('rule a at helo:\n  helo ~ /(a/ => reject');
    assert.equal(
      formatDiagnostic(d[0] as Diagnostic),
      'x.rules:2:10: error[rule/bad-regex]: invalid regex: missing ): (a\n  2 |   helo ~ /(a/ => reject\n    |          ^^^^\n  hint: see https://github.com/google/re2/wiki/Syntax',
    );
  });

  it('unknown field names the nearest known one', () => {
    assert.equal(one('rule a at mail: sendr == "x" => reject'), '1:17 rule/unknown-field unknown field `sendr` | did you mean `sender`?');
    assert.equal(one('rule a at eoh: header.subject ~ /x/ => reject'), '1:16 rule/unknown-field unknown field `header.subject` | headers are written header("subject")');
  });

  it('a bad regex gives RE2 reason', () => {
    assert.equal(one('rule a at helo: helo ~ /(?<=x)y/ => reject'), '1:24 rule/bad-regex invalid regex: invalid perl operator: (?<= | RE2 runs in linear time and has no lookaround or backreferences; rewrite the pattern without them');
    assert.match(one('rule a at helo: helo ~ /x/q => reject'), /^1:24 rule\/bad-regex unknown regex flag "q"/);
  });

  it('type mismatches: regex against an address, a CIDR list against a text field, units', () => {
    assert.equal(one('rule a at connect: client ~ /^10\\./ => reject'), '1:27 rule/type-mismatch a regex cannot match the address field `client` | use `client in LIST` with CIDR prefixes or `client == 192.0.2.1`; `client.name` is the client\'s host name');
    assert.equal(
      one('list nets = 10.0.0.0/8\nrule a at helo: helo in nets => reject'),
      '2:25 rule/type-mismatch list `nets` holds addresses and CIDR prefixes, but `helo` is a text field | an address list matches address fields (client, destination); for a text list, quote the entries',
    );
    assert.match(one('list names = a.example, b.example\nrule a at connect: client in names => reject'), /^2:30 rule\/type-mismatch list `names` has entries that are not addresses \("a\.example"\)/);
    assert.equal(one('rule a at mail: size.declared > 2h => reject'), '1:33 rule/unit-mismatch `size.declared` is a size field, but 2h is a duration | sizes: B, KB, MB, GB');
    assert.equal(one('rule a at mail: size.declared > 2XB => reject'), '1:33 rule/bad-unit unknown unit "XB" in 2XB | sizes: B, KB, MB, GB; durations: s, m, h, d, w');
    assert.equal(one('rule a at helo: helo > 3 => reject'), '1:22 rule/type-mismatch > compares numbers; `helo` is a text field | use == or ~ /regex/');
    assert.equal(one('rule a at connect: client == 10.0.0.0/8 => reject'), '1:30 rule/bad-address "10.0.0.0/8" is not an IP address | to match a prefix write client in (10.0.0.0/8)');
    assert.equal(one('list n = 10.0.0.1/8\nrule a at connect: client in n => reject'), '2:30 rule/bad-prefix list `n`: 10.0.0.1/8 has host bits set; the network is 10.0.0.0/8');
    assert.equal(one('rule a at mail: spf == failed => reject'), '1:24 rule/bad-value "failed" is not a value of `spf` | did you mean `fail`?');
    assert.equal(one('rule a at mail: sender => reject'), '1:17 rule/not-boolean `sender` is a text field, not a condition | compare it: `sender ~ /regex/`, `sender == "text"`, `sender in LIST` or `sender exists`');
  });

  it('reply codes: a reject with a 2xx code, a class mismatch, a tempfail with 5xx', () => {
    assert.equal(one('rule a at helo: => reject 250 "ok"'), '1:27 rule/bad-reply a reject needs a 5xx code, not 250 | a reject takes a 5xx code, e.g. reject 550 5.7.1 "text"');
    assert.equal(one('rule a at helo: => reject 550 4.7.1 "x"'), '1:31 rule/bad-reply enhanced status code 4.7.1 has class 4 but the reply code 550 has class 5 | a reject takes a 5xx code, e.g. reject 550 5.7.1 "text"');
    assert.equal(one('rule a at helo: => tempfail 550'), '1:29 rule/bad-reply a tempfail needs a 4xx code, not 550 | a tempfail takes a 4xx code, e.g. tempfail 451 4.7.1 "text"');
  });

  it('unknown list, zone and hook (with the nearest name)', () => {
    assert.equal(one('list trusted = 127.0.0.1\nrule a at connect: client in trustd => accept'), '2:30 rule/unknown-list unknown list `trustd` | did you mean `trusted`?');
    assert.equal(one('rule a at connect: dnsbl(zem) => reject', { dnsLists: new Set(['zen']) }), '1:20 rule/unknown-zone unknown DNS list `zem` | did you mean `zen`?');
    assert.equal(one('rule a at connect: => reject hook notfy', { hooks: new Set(['notify']) }), '1:35 rule/unknown-hook unknown action hook `notfy` | did you mean `notify`?');
  });

  it('fields not available at the rule stage', () => {
    assert.equal(one('rule a at connect: rcpt ~ /x/ => reject'), '1:20 rule/field-stage `rcpt` is not known at the connect stage | it is known only at the rcpt stage; at data and later use `rcpts`');
    assert.equal(one('rule a at data: virus => reject'), '1:17 rule/field-stage `virus` is not known at the data stage | it is known from the eom stage on');
    assert.equal(one('rule a at helo: => reject 550 "{sender}"'), '1:31 rule/field-stage {sender} is not known at the helo stage | it is known from the mail stage on');
    assert.equal(one('rule a at connect: => reject lock auth 1h'), '1:30 rule/field-stage the authenticated user is not known at the connect stage | lock auth from the auth stage on');
  });

  it('names, stages, actions and templates', () => {
    assert.equal(one('rule a at conect: => accept'), '1:11 rule/unknown-stage unknown stage `conect` | did you mean `connect`?');
    assert.equal(one('rule a at helo: => accept\nrule a at mail: => accept'), '2:6 rule/duplicate-rule rule `a` is already declared at x.rules:1:6 | rule names must be unique across all rule files');
    assert.equal(one('list l = a\nlist l = b'), '2:6 rule/duplicate-list list `l` is already declared at x.rules:1:6 | list names must be unique across all rule files');
    assert.equal(one('rule a at helo: => reject accept'), '1:27 rule/conflicting-actions a rule has one final action; this one already ends with reject | split it into two rules');
    assert.equal(one('rule a at helo: => discard'), '1:20 rule/action-stage discard acts on a message and cannot be used at the helo stage | use it at mail, rcpt, data, header, eoh, eom');
    assert.equal(one('rule a at data: => add header "Bad Name" "x"'), '1:31 rule/bad-header "Bad Name" is not a valid header name | header names are printable ASCII without spaces or ":" (RFC 5322 §2.2)');
    assert.equal(one('rule a at data: => add header "X" "{clinet.ip}"'), '1:35 rule/unknown-variable unknown variable {clinet.ip} | did you mean `client.ip`?');
    assert.equal(one('rule a at helo: => reject lock 5 reason "x"'), '1:32 rule/bad-duration "5" is not a duration | write a number and a unit: 30s, 10m, 1h, 2d, or forever');
    assert.equal(one('rule a at helo: => bounce'), '1:20 rule/unknown-action expected an action but found "bounce" | actions: accept, reject, tempfail, discard, quarantine, add header, insert header, remove header, lock, hook, tag');
  });

  it('syntax errors', () => {
    assert.equal(one('rule a at helo helo == "x" => reject'), '1:16 rule/syntax expected ":" but found "helo" | rule NAME at STAGE: CONDITION => ACTION');
    assert.equal(one('rule a at helo: helo = "x" => reject'), '1:22 rule/syntax a single "=" is not a comparison | write == to compare');
    assert.equal(one('rule a at helo: helo == "x"'), '1:28 rule/syntax expected "=>" but found the end of the file | the condition ends with => followed by the actions');
    assert.equal(one('rule a at helo: helo == "x => reject'), '1:25 rule/bad-string unterminated string | close the string with "');
    assert.equal(one('rulez a'), '1:1 rule/syntax expected "rule", "list" or "test" but found "rulez" | every declaration starts with rule, list or test');
    assert.equal(one('rule a at mail: !authenticated => reject'), '1:17 rule/unexpected-char unexpected "!" | use `not` to negate a condition, `!=` or `!~` to compare');
  });

  it('test blocks', () => {
    assert.equal(one('test "t" { clinet 1.2.3.4; expect accept at connect }'), '1:12 rule/bad-test unknown test statement `clinet` | did you mean `client`?');
    assert.equal(one('test "t" { expect rejct at helo }'), '1:19 rule/bad-test unknown verdict "rejct" | did you mean `reject`?');
    assert.equal(one('test "t" { expect reject 550 }'), '1:12 rule/bad-test say at which stage the verdict is expected | expect reject 550 at helo');
    assert.equal(one('test "t" { client 1.2.3.4 }'), '1:1 rule/bad-test test "t" expects nothing | add e.g. expect reject 550 at helo, or expect continue');
    assert.equal(one('test "t" { spf failed; expect continue }'), '1:16 rule/bad-test "failed" is not an SPF result | did you mean `fail`?');
  });

  it('reports every error of every file at once, in file order, and never half-loads', () => {
    try {
      compileRules([
        { file: 'a.rules', text: 'rule ok at helo: => accept\nrule x at helo: heloo == "a" => reject' },
        { file: 'b.rules', text: 'rule y at conect: => accept\nrule z at mail: client ~ /x/ => reject' },
      ]);
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof DiagnosticsError);
      assert.deepEqual(
        e.diagnostics.map((d) => `${d.location?.file}:${d.location?.line} ${d.code}`),
        ['a.rules:2 rule/unknown-field', 'b.rules:1 rule/unknown-stage', 'b.rules:2 rule/type-mismatch'],
      );
    }
  });

  it('lists and tests may live in another file than the rules using them', () => {
    const rs = compileRules([
      { file: '10-lists.rules', text: 'list trusted = 127.0.0.0/8' },
      { file: '20-rules.rules', text: 'rule t at connect: client in trusted => accept' },
      { file: '30-tests.rules', text: 'test "lo" { client 127.0.0.1; expect accept at connect }' },
    ]);
    assert.equal(rs.rules.length, 1);
    assert.equal(rs.tests.length, 1);
  });

  it('every other diagnostic kind, exactly', () => {
    const cases: [string, string][] = [
      ['rule a at helo: ' + '('.repeat(70) + 'tls' + ')'.repeat(70) + ' => reject', '1:81 rule/too-deep conditions nest more than 64 levels'],
      ['rule a at helo: tls' + ' or tls'.repeat(1001) + ' => reject', '1:7021 rule/too-complex a condition may have at most 1000 terms | use a list: field in LIST'],
      ['rule a at eoh: header ~ /x/ => reject', '1:16 rule/missing-argument `header` needs an argument | e.g. header("Subject")'],
      ['rule a at helo: helo(x) ~ /x/ => reject', '1:17 rule/unexpected-argument `helo` takes no argument | write just helo'],
      ['rule a at mail: spf failed => reject', '1:17 rule/bad-predicate `failed` applies to dnsbl(...), rhsbl(...), scanner(...) and locks; `spf` is a keyword field | write spf == temperror'],
      ['rule a at helo: helo skipped => reject', '1:17 rule/bad-predicate `skipped` applies to scanner(...); `helo` is a text field'],
      ['rule a at connect: hour exists => reject', '1:20 rule/bad-predicate `exists` applies to text fields and header(...); `hour` is a number field'],
      ['rule a at connect: tls is locked => reject', '1:20 rule/type-mismatch `tls` cannot be locked | `client is locked` or `auth is locked`'],
      ['rule a at data: => add header "X" "{client.ip"', '1:35 rule/bad-template unclosed "{" in text | variables are written {client.ip}; write {{ for a literal brace'],
      ['rule a at data: => add header "X" "a}b"', '1:35 rule/bad-template unmatched "}" in text | write }} for a literal brace'],
      ['rule a at data: => add header "X" "a\\nb"', '1:35 rule/bad-header a line break in a header value must be followed by a space or tab (folding) | write "\\n\\t" to continue the header on the next line'],
      ['test "t" { expect continue }\ntest "t" { expect continue }', '2:1 rule/duplicate-test test "t" is already declared at x.rules:1:1'],
      ['rule a at helo: => tag "two words"', '1:24 rule/bad-tag tag "two words" must be a word (letters, digits, . _ : -)'],
      ['rule a at helo: => reject lock 1h lock 2h', '1:35 rule/conflicting-actions a rule can set one lock'],
      ['rule a at eom: virus == yes => reject', '1:25 rule/type-mismatch `virus` is yes/no; compare it with true or false | or just write `virus` / `not virus`'],
      ['rule a at connect: weekday == saturday => reject', '1:31 rule/bad-value "saturday" is not a value of `weekday` | values: sun, mon, tue, wed, thu, fri, sat'],
      ['rule a at connect: client in (a, 10.0.0.0/8) => reject', '1:30 rule/type-mismatch list `(a, 10.0.0.0/8)` has entries that are not addresses ("a"), so it cannot match the address field `client` | address lists hold addresses and CIDR prefixes only (192.0.2.0/24, 2001:db8::/32); the entry is at x.rules:1:31'],
      ['rule a at connect: door in (milter, smtp) => reject', '1:28 rule/bad-value "smtp" is not a value of `door` | values: intercept, milter, filter, policy, test'],
      ['rule a at rcpt: rcpts.count in (1,2) => reject', '1:29 rule/type-mismatch `in` needs an address or text field; `rcpts.count` is a number field | compare numbers with <, <=, >, >=, =='],
      ['rule a at helo: helo ~ "x" => reject', '1:24 rule/type-mismatch expected a /regex/ after ~ | write ~ /x/ (or use == for an exact match)'],
      ['rule a at helo: helo == /x/ => reject', '1:22 rule/type-mismatch a regex needs ~, not == | write helo ~ /x/'],
      ['rule a at connect: dnsbl(zen) => reject', '1:20 rule/unknown-zone unknown DNS list `zen` | no DNS lists are configured (dns_lists in sluice.yaml)'],
      ['rule a at helo: => reject "{dnsbl(zem).reason}"', '1:27 rule/unknown-zone unknown DNS list `zem` in {dnsbl(zem).reason} | no such DNS list is configured'],
      ['rule a at helo: => reject "{rhsbl(x).reason}"', '1:27 rule/field-stage {rhsbl(x).reason} is not known at the helo stage | it is known from the mail stage on'],
      ['rule a at data: => remove header "X-Spam"', '1:20 rule/action-stage remove header needs the message headers and cannot be used at the data stage | use it at eoh, eom'],
      ['rule a at mail: => reject lock 0s', '1:32 rule/bad-duration a lock duration must be positive | write a number and a unit: 30s, 10m, 1h, 2d, or forever'],
    ];
    for (const [text, want] of cases) assert.equal(one(text, { dnsLists: new Set() }), want, text.slice(0, 80));
  });

  it('stops listing after 200 errors, saying so last', () => {
    const d = diags('rule a at helo: heloo == x => reject\n'.repeat(500));
    assert.equal(d.length, 201);
    assert.deepEqual(d[200], { code: 'rule/too-many-errors', message: 'more than 200 errors; the rest are not shown' });
  });

  it('bounds literals: over-long words, strings and regexes are diagnostics', () => {
    assert.equal(one('rule a at helo: helo == ' + 'x'.repeat(9000) + ' => reject'), '1:25 rule/bad-word word is longer than 8192 characters');
    assert.equal(one('rule a at helo: helo == "' + 'x'.repeat(9000) + '" => reject'), '1:25 rule/bad-string string is longer than 8192 characters');
    assert.equal(one('rule a at helo: helo ~ /' + 'x'.repeat(9000) + '/ => reject'), '1:24 rule/bad-regex regex is longer than 8192 characters');
  });
});
