import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliMain } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

function sluice(cwd: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliMain, ...args], { cwd, encoding: 'utf8', timeout: 15000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('sluice check (built binary)', function () {
  this.timeout(20000);
  let tmp: { path: string; remove: () => void };
  beforeEach(() => (tmp = makeTempDir()));
  afterEach(() => tmp.remove());

  it('exits 0 with a one-line summary for a valid configuration', () => {
    writeFileSync(join(tmp.path, 'ok.yaml'), 'policyd: { listen: 127.0.0.1:10029 }\nmilter: { listen: unix:milter.sock }\n');
    const r = sluice(tmp.path, 'check', '-c', 'ok.yaml');
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, `${join(tmp.path, 'ok.yaml')}: ok: 2 doors (milter on unix:${join(tmp.path, 'milter.sock')}, policyd on 127.0.0.1:10029); 0 rule files, 0 rules\n`);
    assert.equal(r.status, 0);
    writeFileSync(join(tmp.path, 'workers.yaml'), 'intercept: { name: edge, listen: 127.0.0.1:10025, upstream: 127.0.0.1:25, workers: 3 }\n');
    assert.equal(sluice(tmp.path, 'check', '-c', 'workers.yaml').stdout, `${join(tmp.path, 'workers.yaml')}: ok: 1 door (intercept edge on 127.0.0.1:10025, 3 workers); 0 rule files, 0 rules\n`);
    const q = sluice(tmp.path, 'check', '--quiet', '--config=ok.yaml');
    assert.equal(q.stdout, '');
    assert.equal(q.status, 0);
    const p = sluice(tmp.path, 'check', '--print', '-c', 'ok.yaml');
    assert.equal(p.status, 0);
    const effective = JSON.parse(p.stdout) as { limits: { idleTimeout: number }; policyd: { listen: unknown }; stateDir: string };
    assert.equal(effective.limits.idleTimeout, 300_000);
    assert.deepEqual(effective.policyd.listen, { kind: 'tcp', host: '127.0.0.1', port: 10029 });
    assert.equal(effective.stateDir, join(tmp.path, '.state'));
  });

  it('prints every problem with file:line:col and exits 1', () => {
    const file = join(tmp.path, 'bad.yaml');
    writeFileSync(file, 'policyd:\n  listen: 127.0.0.1:10029\n  max_requests: 1KB\nlog:\n  level: loud\n');
    const r = sluice(tmp.path, 'check', '-c', file);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      [
        `${file}:3:3: error[config/unknown-key]: unknown key policyd.max_requests`,
        '  3 |   max_requests: 1KB',
        '    |   ^^^^^^^^^^^^',
        '  hint: did you mean "max_request"?',
        `${file}:5:10: error[config/value]: log.level: expected one of debug, info, warn, error, got "loud"`,
        '  5 |   level: loud',
        '    |          ^^^^',
        'sluice check: 2 problems found',
        '',
      ].join('\n'),
    );
  });

  it('compiles every rule file against the configuration and reports rule errors with positions', () => {
    writeFileSync(join(tmp.path, 'r.rules'), 'rule a at mail: sender ~ => reject\nrule b at helo: dnsbl("zen") listed => reject\n');
    writeFileSync(join(tmp.path, 's.yaml'), 'rules: r.rules\npolicyd: { listen: 127.0.0.1:10029 }\n');
    let r = sluice(tmp.path, 'check', '-c', 's.yaml');
    assert.equal(r.status, 1);
    const errors = r.stderr.split('\n').filter((l) => / error\[/.test(l));
    assert.deepEqual(errors, [
      `${join(tmp.path, 'r.rules')}:1:26: error[rule/syntax]: expected a value after "~" but found "=>"`,
      `${join(tmp.path, 'r.rules')}:2:17: error[rule/unknown-zone]: unknown DNS list \`zen\``,
    ]);
    assert.match(r.stderr, /sluice check: 2 problems found\n$/);

    // The DNS list name comes from the configuration: once it is configured the rule compiles.
    writeFileSync(join(tmp.path, 'r.rules'), 'rule b at helo: dnsbl("zen") listed => reject\n');
    writeFileSync(join(tmp.path, 's.yaml'), 'rules: r.rules\ndns_lists: [{ name: zen, zone: zen.example.test }]\npolicyd: { listen: 127.0.0.1:10029 }\n');
    r = sluice(tmp.path, 'check', '-c', 's.yaml');
    assert.equal(r.stderr, '');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /; 1 rule file, 1 rule\n$/);
  });

  it('refuses DNS list answer codes that are not IPv4 (list answers are A records), with positions', () => {
    writeFileSync(
      join(tmp.path, 's.yaml'),
      'dns_lists:\n  - name: zen\n    zone: zen.example.test\n    listed: [127.0.0.2-127.0.0.11, "::1"]\n    error_codes: [127.255.255.0/33]\npolicyd: { listen: 127.0.0.1:10029 }\n',
    );
    const r = sluice(tmp.path, 'check', '-c', 's.yaml');
    assert.equal(r.status, 1);
    assert.deepEqual(
      r.stderr.split('\n').filter((l) => / error\[/.test(l)),
      [
        `${join(tmp.path, 's.yaml')}:4:36: error[config/value]: dns_lists[0].listed[1]: not an IPv4 address, range or CIDR: "::1"`,
        `${join(tmp.path, 's.yaml')}:5:19: error[config/value]: dns_lists[0].error_codes[0]: not an IPv4 CIDR: "127.255.255.0/33"`,
      ],
    );
    assert.match(r.stderr, /hint: DNS list answers are A records: write IPv4 codes such as 127\.0\.0\.2\n/);
    assert.match(r.stderr, /sluice check: 2 problems found\n$/);
  });

  it('exits 1 when the file does not exist', () => {
    const r = sluice(tmp.path, 'check', '-c', 'missing.yaml');
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error[config/read]: cannot read ${join(tmp.path, 'missing.yaml')}: no such file\nsluice check: 1 problem found\n`);
  });
});
