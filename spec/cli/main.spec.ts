import assert from 'node:assert/strict';
import type { CliIO } from '../../lib/cli/cli-io.js';
import { HELP, main } from '../../lib/cli/main.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIO = { stdout: (s) => void (out += s), stderr: (s) => void (err += s), cwd: process.cwd(), env: {} };
  const code = await main(argv, io);
  return { code, out, err };
}

describe('sluice (CLI shell)', () => {
  it('prints the complete help with every command', async () => {
    const r = await cli('--help');
    assert.equal(r.code, 0);
    assert.equal(r.out, HELP);
    for (const c of ['run', 'check', 'policy test', 'locks', 'quarantine', 'version', 'help']) assert.match(r.out, new RegExp(`^  ${c} +\\S`, 'm'));
  });

  it('prints usage and exits 64 without a command', async () => {
    const r = await cli();
    assert.equal(r.code, 64);
    assert.equal(r.err, HELP);
  });

  it('suggests the nearest command for a typo', async () => {
    const r = await cli('chek');
    assert.equal(r.code, 64);
    assert.equal(r.err, `sluice: unknown command "chek" (did you mean "check"?)\nRun 'sluice --help' for usage.\n`);
  });

  it('names a missing subcommand', async () => {
    const r = await cli('policy');
    assert.equal(r.code, 64);
    assert.equal(r.err, `sluice policy: missing subcommand (one of: test)\nRun 'sluice --help' for usage.\n`);
  });

  it('gives each command its own --help', async () => {
    for (const c of [['run'], ['check'], ['policy', 'test'], ['locks'], ['quarantine']]) {
      const r = await cli(...c, '--help');
      assert.equal(r.code, 0, c.join(' '));
      assert.match(r.out, /^Usage: sluice /, c.join(' '));
    }
    const viaHelp = await cli('help', 'check');
    assert.equal(viaHelp.code, 0);
    assert.match(viaHelp.out, /^Usage: sluice check \[-c CONFIG\]/);
  });

  it('reports option errors precisely with exit 64', async () => {
    let r = await cli('check', '--confg', 'x.yaml');
    assert.equal(r.code, 64);
    assert.equal(r.err, `sluice check: unknown option --confg (did you mean --config?)\nRun 'sluice check --help' for usage.\n`);
    r = await cli('run', '-c');
    assert.equal(r.code, 64);
    assert.equal(r.err, `sluice run: option -c needs a value (FILE)\nRun 'sluice run --help' for usage.\n`);
    r = await cli('check', 'extra');
    assert.equal(r.code, 64);
    assert.equal(r.err, `sluice check: unexpected argument "extra"\nRun 'sluice check --help' for usage.\n`);
    r = await cli('version', 'x');
    assert.equal(r.code, 64);
  });

  it('prints the version', async () => {
    const r = await cli('version');
    assert.equal(r.code, 0);
    assert.match(r.out, /^sluice \d+\.\d+\.\d+\n$/);
    assert.equal((await cli('--version')).out, r.out);
  });
});
