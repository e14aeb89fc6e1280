/**
 * Golden output of `sluice policy test` (the built binary): each case runs the CLI in spec/fixtures/policy-test
 * and compares exit code, stdout and stderr with NAME.ref. Regenerate with UPDATE_GOLDEN=1 after a deliberate change.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliMain, fixturesDir } from '../helpers/paths.js';

const dir = join(fixturesDir, 'policy-test');

const CASES: ReadonlyArray<{ name: string; args: string[]; normalise?: (s: string) => string }> = [
  { name: 'mixed-text', args: ['mixed.rules', '--coverage'] },
  { name: 'mixed-verbose-run', args: ['mixed.rules', '--run', '^(localhost|loopback)', '--verbose'] },
  { name: 'mixed-json', args: ['mixed.rules', '--format', 'json'], normalise: (s) => s.replace(/"durationMs": [\d.e-]+/g, '"durationMs": 0') },
  { name: 'mixed-junit', args: ['mixed.rules', '--format', 'junit'], normalise: (s) => s.replace(/time="[\d.]+"/g, 'time="0"') },
  { name: 'broken', args: ['broken.rules'] },
  {
    name: 'explain',
    args: ['mixed.rules', '--client', '192.0.2.7', '--helo', 'pc.example', '--mail', 'a@example.org', '--rcpt', 'b@example.net', '--explain'],
  },
  { name: 'scenario-verdict', args: ['mixed.rules', '--client', '203.0.113.9', '--helo', 'localhost'] },
  { name: 'usage-bad-format', args: ['mixed.rules', '--format', 'xml'] },
];

describe('cli: sluice policy test golden output (built binary)', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const r = spawnSync(process.execPath, [cliMain, 'policy', 'test', ...c.args], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
      const norm = c.normalise ?? ((s: string) => s);
      const actual = `exit ${r.status}\n--- stdout\n${norm(r.stdout)}--- stderr\n${norm(r.stderr)}`;
      const ref = join(dir, `${c.name}.ref`);
      if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(ref)) {
        if (process.env['CI'] === 'true') assert.fail(`golden file ${ref} is missing`);
        writeFileSync(ref, actual);
      }
      assert.equal(actual, readFileSync(ref, 'utf8'));
    });
  }
});

describe('cli: the example ruleset conf/rules', () => {
  it('passes its own embedded tests (sluice policy test conf/rules)', () => {
    const r = spawnSync(process.execPath, [cliMain, 'policy', 'test', 'conf/rules'], { cwd: join(fixturesDir, '..', '..'), encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /\n\d+ passed, 0 failed\n$/);
    assert.equal(r.status, 0);
  });
});
