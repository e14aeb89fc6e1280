import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileRules, runRuleTests } from '../../lib/policy/index.js';
import { repoRoot } from '../helpers/paths.js';

describe('docs/rules.md', () => {
  it('the example at the top compiles and its tests pass', async () => {
    const md = readFileSync(join(repoRoot, 'docs', 'rules.md'), 'utf8');
    const m = /```\n([\s\S]*?)```/.exec(md);
    assert.ok(m, 'no example block');
    // The example's list file is replaced by an inline list (the spec has no customers.txt).
    const text = (m[1] as string).replace('file "customers.txt"', '198.51.100.0/24');
    const rs = compileRules([{ file: 'docs/rules.md', text }], { dnsLists: new Set(['zen', 'dnswl']), hooks: new Set(['notify']) });
    assert.ok(rs.rules.length >= 10);
    const { results } = await runRuleTests(rs);
    assert.equal(results.length, 2);
    for (const r of results) assert.ok(r.passed, `${r.name}: ${r.failure}`);
  });

  it('the statements the reference mentions parse', async () => {
    const rs = compileRules([
      {
        file: 'ref.rules',
        text: `
          list l = @example.com, "10.0.0.1"
          rule a at helo: helo in (localhost, "localhost.localdomain") => reject
          rule b at rcpt: dnsbl(zen) in (127.0.0.2, 127.0.0.3) or rcpt in l => reject
          rule c at eom: header("X-Spam") exists and spam.symbols ~ /BAYES/ and scanner failed => tag odd
          rule d at mail: auth is not locked and client is not locked => tag ok
          test "null sender" { sender <>; rcpt <postmaster@example.net>; expect continue }
          test "bracketed sender" { sender <a@example.com>; rcpt x@example.com; expect reject at rcpt }
        `,
      },
    ]);
    const { results } = await runRuleTests(rs);
    for (const r of results) assert.ok(r.passed, `${r.name}: ${r.failure}`);
  });
});
