/**
 * A private spamd for tests: local rules only (-L), no user configs (-x), a config dir the helper writes
 * (a GTUBE rule and one header rule, no sa-update, no network), listening on a free 127.0.0.1 port.
 * Runs as `nobody` when started as root (spamd refuses to run as root). Always call stop() in after().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { makeTempDir } from './temp-dir.js';

export const SPAMD_BINARY = '/usr/sbin/spamd';

export function spamdAvailable(): boolean {
  return existsSync(SPAMD_BINARY);
}

/** A subject that makes our private ruleset add 3.5 points (rule SLUICE_TEST_SUBJ). */
export const SPAMMY_SUBJECT = 'sluice-spammy offer';

export interface RunningSpamd {
  readonly port: number;
  readonly address: string;
  output(): string;
  stop(): Promise<void>;
}

async function pingOnce(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = '';
    const t = setTimeout(() => { s.destroy(); resolve(false); }, 1000);
    s.on('connect', () => s.write('PING SPAMC/1.5\r\n\r\n'));
    s.on('data', (d) => { buf += d.toString('latin1'); });
    s.on('close', () => { clearTimeout(t); resolve(/PONG/.test(buf)); });
    s.on('error', () => { clearTimeout(t); resolve(false); });
  });
}

export async function startSpamd(): Promise<RunningSpamd> {
  const tmp = makeTempDir('sluice-spamd-');
  chmodSync(tmp.path, 0o755); // spamd's children run as nobody and must read the rules
  const rules = join(tmp.path, 'rules');
  const site = join(tmp.path, 'site');
  mkdirSync(rules, { mode: 0o755 });
  mkdirSync(site, { mode: 0o755 });
  writeFileSync(
    join(rules, '10_sluice_test.cf'),
    [
      'required_score 5.0',
      'util_rb_tld test com org net',
      'body GTUBE /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/',
      'describe GTUBE Generic Test for Unsolicited Bulk Email',
      'score GTUBE 1000',
      'header SLUICE_TEST_SUBJ Subject =~ /sluice-spammy/',
      'score SLUICE_TEST_SUBJ 3.5',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  writeFileSync(join(site, 'v320.pre'), 'loadplugin Mail::SpamAssassin::Plugin::Check\n', { mode: 0o644 });
  writeFileSync(join(site, 'local.cf'), '', { mode: 0o644 });
  const port = await freePort();
  const args = ['-L', '-x', '--configpath', rules, '--siteconfigpath', site, '-i', `127.0.0.1:${port}`, '-A', '127.0.0.1', '-m', '3', '--min-children', '1', '-s', 'stderr', '--pidfile', join(tmp.path, 'spamd.pid')];
  if (process.getuid?.() === 0) args.push('-u', 'nobody');
  let out = '';
  const child: ChildProcess = spawn(SPAMD_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20000); });
  child.stderr?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20000); });
  let exited = false;
  const exitP = new Promise<void>((resolve) => child.on('exit', () => { exited = true; resolve(); }));
  const deadline = Date.now() + 30_000;
  while (!(await pingOnce(port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      tmp.remove();
      throw new Error(`spamd did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return {
    port,
    address: `127.0.0.1:${port}`,
    output: () => out,
    stop: async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exitP;
        clearTimeout(t);
      }
      tmp.remove();
    },
  };
}
