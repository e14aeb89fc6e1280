/**
 * A private clamd for tests: foreground, its own config, a Unix socket and a TCP port on 127.0.0.1, and a
 * signature database the helper writes itself (an .ndb body signature for EICAR). Nothing is downloaded;
 * freshclam never runs. Always call stop() in an after() hook.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { EICAR, EICAR_SIGNATURE } from './scan-samples.js';
import { freePort } from './ports.js';
import { makeTempDir } from './temp-dir.js';

export const CLAMD_BINARY = '/usr/sbin/clamd';

export function clamdAvailable(): boolean {
  return existsSync(CLAMD_BINARY);
}

export interface ClamdOptions {
  /** clamd's StreamMaxLength, e.g. "100K" or "20M" (default "25M"). */
  readonly streamMaxLength?: string;
}

export interface RunningClamd {
  readonly dir: string;
  readonly socketPath: string;
  readonly port: number;
  readonly pid: number;
  /** Output clamd wrote (for failure messages). */
  output(): string;
  /** Kills clamd at once (SIGKILL), without removing the directory. */
  kill(): void;
  stop(): Promise<void>;
}

async function pingOnce(path: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect({ path });
    let buf = '';
    const t = setTimeout(() => { s.destroy(); resolve(false); }, 1000);
    s.on('connect', () => s.write('zPING\0'));
    s.on('data', (d) => { buf += d.toString('latin1'); if (buf.includes('\0')) { clearTimeout(t); s.destroy(); resolve(buf.startsWith('PONG')); } });
    s.on('error', () => { clearTimeout(t); resolve(false); });
  });
}

export async function startClamd(options: ClamdOptions = {}): Promise<RunningClamd> {
  const tmp = makeTempDir('sluice-clamd-');
  const db = join(tmp.path, 'db');
  mkdirSync(db);
  writeFileSync(join(db, 'sluice-test.ndb'), `${EICAR_SIGNATURE}:0:*:${Buffer.from(EICAR, 'latin1').toString('hex')}\n`);
  const socketPath = join(tmp.path, 'clamd.sock');
  const port = await freePort();
  const conf = join(tmp.path, 'clamd.conf');
  writeFileSync(
    conf,
    [
      'Foreground yes',
      `LocalSocket ${socketPath}`,
      'LocalSocketMode 600',
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `DatabaseDirectory ${db}`,
      `TemporaryDirectory ${tmp.path}`,
      `StreamMaxLength ${options.streamMaxLength ?? '25M'}`,
      'MaxThreads 4',
      'SelfCheck 0',
      'LogTime no',
      '',
    ].join('\n'),
  );
  let out = '';
  const child: ChildProcess = spawn(CLAMD_BINARY, ['--config-file', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20000); });
  child.stderr?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20000); });
  let exited = false;
  const exitP = new Promise<void>((resolve) => child.on('exit', () => { exited = true; resolve(); }));
  const deadline = Date.now() + 30_000;
  while (!(existsSync(socketPath) && (await pingOnce(socketPath)))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      tmp.remove();
      throw new Error(`clamd did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dir: tmp.path,
    socketPath,
    port,
    pid: child.pid ?? 0,
    output: () => out,
    kill: () => { if (!exited) child.kill('SIGKILL'); },
    stop: async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exitP;
        clearTimeout(t);
      }
      tmp.remove();
    },
  };
}
