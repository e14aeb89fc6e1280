import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiagnosticsError } from '../../lib/core/errors.js';
import { compileRuleFiles, compileRules, explainScenario, runRuleTests } from '../../lib/policy/index.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RULES = `
list trusted = 127.0.0.0/8, ::1
list customers = 198.51.100.0/24
rule trusted at connect:   client in trusted => accept
rule locked at connect:    client is locked => reject 554 5.7.1 "Locked: {lock.reason}"
rule bad-helo at helo:     helo ~ /^(localhost|\\[?[0-9.]+\\]?)$/i
                           => reject 550 5.7.1 "Forbidden HELO/EHLO" lock 1h reason "REGEX_HELO"
rule need-auth at mail:    not authenticated and client in customers => reject 530 5.7.0 "Authentication required"
rule spf at mail:          spf == fail => reject 550 5.7.23 "SPF fail for {sender.domain}"
rule zen at rcpt:          dnsbl(zen) => reject 554 5.7.1 "Listed in zen"
rule nat-header at data:   => add header "X-NAT-Received" "from [{client.ip}]:{client.port} [ident-empty]\\n\\tby {proxy.name} with TPROXY id {session.start}.{pid}"
rule virus at eom:         virus => reject 550 5.7.1 "Malware found ({virus.name})" tag virus
rule spam at eom:          spam.score >= spam.threshold => quarantine "spam"
rule night at connect:     hour < 5 and not client in trusted => tag night
rule early at connect:     earlytalker and door == milter => tag early-milter
test "localhost is refused" { client 203.0.113.9; helo "localhost"; expect reject 550 5.7.1 at helo }
test "trusted clients skip everything" { client 127.0.0.1; helo "localhost"; expect accept at connect }
test "customer must authenticate" { client 198.51.100.7; sender a@b.example; expect reject 530 5.7.0 "Authentication" at mail }
test "customer with auth passes" { client 198.51.100.7; auth alice; expect continue }
test "spf fail" { spf=fail; sender x@forged.example; expect reject 550 5.7.23 "forged.example" at mail }
test "dnsbl" { dnsbl zen 127.0.0.2; expect reject 554 at rcpt }
test "dnsbl failure does not block" { dnsbl zen failed; expect continue }
test "virus" { virus "Eicar-Test-Signature"; expect reject 550 "Eicar" at eom; expect tag virus }
test "nat header" { client 203.0.113.9 port 4000; expect header "X-NAT-Received" ~ /^from \\[203\\.0\\.113\\.9\\]:4000 \\[ident-empty\\]\\n\\tby sluice\\.test with TPROXY id \\d+\\.\\d+$/ }
test "locked client" { client 203.0.113.50; locked client 203.0.113.50 reason "REGEX_HELO"; expect reject 554 "Locked: REGEX_HELO" at connect }
test "night tag" { time 2026-01-05T03:00:00Z; client 203.0.113.1; expect tag night }
test "door" { door milter; earlytalker; expect tag early-milter }
test "wrong on purpose" { client 203.0.113.9; helo "mx.example.net"; expect reject at helo }
`;

describe('policy/rule-tester', () => {
  it('runs embedded tests with fact-backed providers and reports expected/actual', async () => {
    const rs = compileRules([{ file: 'main.rules', text: RULES }]);
    const { results, coverage } = await runRuleTests(rs);
    const byName = new Map(results.map((r) => [r.name, r]));
    for (const r of results) if (r.name !== 'wrong on purpose') assert.ok(r.passed, `${r.name}: ${r.failure} (actual ${r.actual})`);
    const wrong = byName.get('wrong on purpose');
    assert.equal(wrong?.passed, false);
    assert.equal(wrong?.expected, 'reject at helo');
    assert.equal(wrong?.actual, 'continue through helo');
    assert.equal(wrong?.failure, 'expected reject at helo, but no rule decided through helo');
    assert.deepEqual(wrong?.location, { file: 'main.rules', line: 28, column: 1 });
    assert.equal(byName.get('localhost is refused')?.actual, 'reject 550 5.7.1 "Forbidden HELO/EHLO" at helo (rule bad-helo)');
    assert.equal(byName.get('localhost is refused')?.hits[0]?.because, 'helo ~ /^(localhost|\\[?[0-9.]+\\]?)$/i: true, helo is "localhost"');
    // spam never fires in any test: coverage says so.
    assert.deepEqual(coverage.filter((c) => !c.reached).map((c) => c.rule), ['spam']);
  });

  it('filters tests by name', async () => {
    const rs = compileRules([{ file: 'main.rules', text: RULES }]);
    const { results } = await runRuleTests(rs, { filter: (n) => n.startsWith('dnsbl') });
    assert.deepEqual(results.map((r) => r.name), ['dnsbl', 'dnsbl failure does not block']);
  });

  it('reports a verdict at the wrong stage and a wrong code', async () => {
    const rs = compileRules([{ file: 't.rules', text: 'rule a at helo: => reject 554 5.7.1 "x"\ntest "s" { expect reject at mail }\ntest "c" { expect reject 550 at helo }' }]);
    const { results } = await runRuleTests(rs);
    assert.equal(results[0]?.failure, 'expected the verdict at mail, but it came at helo');
    assert.equal(results[1]?.failure, 'expected code 550, got 554');
  });

  it('explainScenario shows every rule considered at each stage and stops at the first final verdict', async () => {
    const rs = compileRules([{ file: 'main.rules', text: RULES }]);
    const e = await explainScenario(rs, { client: '198.51.100.9', helo: 'mx.example.net', sender: 'a@b.example' });
    assert.deepEqual(e.stages.map((s) => s.stage), ['connect', 'helo', 'mail']);
    assert.deepEqual(e.stages[0]?.considered.map((c) => `${c.rule}:${c.matched}`), ['trusted:false', 'locked:false', 'night:false', 'early:false']);
    assert.equal(e.stages[0]?.considered[1]?.because, 'client is not locked');
    assert.equal(e.final.action, 'reject');
    assert.equal(e.final.reply?.code, 530);
    assert.equal(e.stages[2]?.considered[0]?.because, 'not authenticated (authenticated is false) and client in customers: true, client is "198.51.100.9"');
    assert.equal(e.stages[2]?.considered[1]?.because, 'not reached: an earlier rule decided');
  });

  describe('files', () => {
    let dir: { path: string; remove: () => void };
    before(() => {
      dir = makeTempDir();
    });
    after(() => dir.remove());

    it('loads a directory of *.rules in name order with lists from files (one per line, # comments)', async () => {
      const d = join(dir.path, 'rules.d');
      mkdirSync(d);
      writeFileSync(join(d, 'customers.txt'), '# our customers\n198.51.100.0/24   # shop\n\n2001:db8:1::/48\n');
      writeFileSync(join(d, 'senders.txt'), 'spammer@bad.example\n@junk.example\n');
      writeFileSync(join(d, '20-rules.rules'), 'rule cust at connect: client in customers => tag customer\nrule bad at mail: sender in bad-senders => reject 550 5.7.1 "no"\n');
      writeFileSync(join(d, '10-lists.rules'), 'list customers = file "customers.txt"\nlist bad-senders = file "senders.txt"\n');
      writeFileSync(join(d, '30-tests.rules'), 'test "c6" { client 2001:db8:1::5; expect tag customer }\ntest "junk" { sender Someone@JUNK.example; expect reject 550 at mail }\ntest "exact" { sender spammer@bad.example; expect reject at mail }\ntest "other" { sender ok@bad.example; expect continue }\n');
      writeFileSync(join(d, 'README.txt'), 'not a rule file');
      const rs = await compileRuleFiles([d]);
      assert.deepEqual(rs.files.map((f) => f.slice(d.length + 1)), ['10-lists.rules', '20-rules.rules', '30-tests.rules']);
      assert.equal(rs.lists.get('customers')?.size, 2);
      const { results } = await runRuleTests(rs);
      for (const r of results) assert.ok(r.passed, `${r.name}: ${r.failure}`);
    });

    it('a missing list file is a diagnostic at the file "..." string', async () => {
      const f = join(dir.path, 'missing.rules');
      writeFileSync(f, 'list x = file "nope.txt"\n');
      await assert.rejects(compileRuleFiles([f]), (e: unknown) => {
        assert.ok(e instanceof DiagnosticsError);
        assert.equal(e.diagnostics[0]?.code, 'rule/list-file');
        assert.equal(e.diagnostics[0]?.location?.line, 1);
        assert.equal(e.diagnostics[0]?.location?.column, 15);
        assert.match(e.diagnostics[0]?.message ?? '', /cannot read list file .*nope\.txt: ENOENT/);
        return true;
      });
    });

    it('a missing rule path is reported, not thrown raw', async () => {
      await assert.rejects(compileRuleFiles([join(dir.path, 'none.rules')]), (e: unknown) => e instanceof DiagnosticsError && e.diagnostics[0]?.code === 'rule/file');
    });
  });
});
