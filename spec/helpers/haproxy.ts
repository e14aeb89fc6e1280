/** A private HAProxy (Debian's) on loopback, configured in a temp dir, for PROXY protocol tests. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { makeTempDir } from './temp-dir.js';

export const HAPROXY_BIN = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));

export function haproxyAvailable(): boolean {
  return HAPROXY_BIN !== undefined && spawnSync(HAPROXY_BIN, ['-v']).status === 0;
}

export interface HaproxyHandle {
  readonly dir: string;
  readonly log: () => string;
  stop(): Promise<void>;
}

/** Waits until host:port accepts a TCP connection. */
export async function waitForPort(host: string, port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts haproxy in the foreground with `body` appended to a tcp-mode defaults section; waits for `ports`. */
export async function startHaproxy(body: string, ports: { host: string; port: number }[]): Promise<HaproxyHandle> {
  if (!HAPROXY_BIN) throw new Error('haproxy not installed');
  const tmp = makeTempDir('sluice-haproxy-');
  const cfg = join(tmp.path, 'haproxy.cfg');
  writeFileSync(
    cfg,
    ['global', '  maxconn 200', 'defaults', '  mode tcp', '  timeout connect 3s', '  timeout client 20s', '  timeout server 20s', body, ''].join('\n'),
  );
  const check = spawnSync(HAPROXY_BIN, ['-c', '-f', cfg], { encoding: 'utf8' });
  if (check.status !== 0) {
    tmp.remove();
    throw new Error(`haproxy config invalid: ${check.stdout}${check.stderr}`);
  }
  const child: ChildProcess = spawn(HAPROXY_BIN, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(t);
    }
    tmp.remove();
  };
  try {
    for (const p of ports) await waitForPort(p.host, p.port);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}; haproxy said: ${log}`);
  }
  return { dir: tmp.path, log: () => log, stop };
}
