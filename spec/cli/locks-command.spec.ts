import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { cliMain } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

function sluice(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [cliMain, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('cli: sluice locks (built binary, SQLite store)', () => {
  const dir = makeTempDir('sluice-locks-cli-');
  const db = join(dir.path, 'locks.db');
  after(() => dir.remove());

  it('adds, lists, removes a lock', () => {
    assert.deepEqual(sluice('locks', 'add', 'client:192.0.2.7', '1h', 'spam run', '--db', db).out, 'locked client:192.0.2.7 for 1h\n');
    const list = sluice('locks', 'list', '--db', db);
    assert.equal(list.code, 0);
    assert.match(list.out, /^client:192\.0\.2\.7\s+(59m\d*s?|1h)\s+manual\s+spam run$/m);
    const json = JSON.parse(sluice('locks', 'list', '--json', '--db', db).out) as Array<{ key: string; reason: string }>;
    assert.deepEqual(json.map((l) => [l.key, l.reason]), [['client:192.0.2.7', 'spam run']]);
    assert.equal(sluice('locks', 'rm', 'client:192.0.2.7', '--db', db).out, 'unlocked client:192.0.2.7\n');
    const again = sluice('locks', 'rm', 'client:192.0.2.7', '--db', db);
    assert.equal(again.code, 1);
    assert.equal(again.err, 'sluice locks rm: client:192.0.2.7 is not locked\n');
  });

  it('allow-lists a prefix so add refuses to lock inside it', () => {
    assert.equal(sluice('locks', 'allow', 'client:198.51.100.0/24', 'office', '--db', db).code, 0);
    const r = sluice('locks', 'add', 'client:198.51.100.9', '1h', '--db', db);
    assert.equal(r.code, 1);
    assert.equal(r.err, 'sluice locks add: client:198.51.100.9 is allow-listed and cannot be locked\n');
    assert.match(sluice('locks', 'allowed', '--db', db).out, /^client:198\.51\.100\.0\/24\s+office$/m);
  });

  it('gives precise usage errors (exit 64)', () => {
    const cases: Array<[string[], RegExp]> = [
      [['locks'], /sluice locks: missing SUBCOMMAND/],
      [['locks', 'frob'], /unknown subcommand "frob"/],
      [['locks', 'add', 'client:192.0.2.1', '--db', db], /sluice locks add: missing DURATION/],
      [['locks', 'add', 'client:192.0.2.1', 'soon', '--db', db], /"soon" is not a duration; write a number with a unit/],
      [['locks', 'add', 'client:192.0.2.1', '90', '--db', db], /"90" is not a duration/],
      [['locks', 'add', 'host:1', '1h', '--db', db], /must start with "client:" or "auth:"/],
      [['locks', 'list', '--bd', db], /unknown option --bd \(did you mean --db\?\)/],
    ];
    for (const [args, re] of cases) {
      const r = sluice(...args);
      assert.equal(r.code, 64, args.join(' '));
      assert.match(r.err, re);
    }
  });
});
