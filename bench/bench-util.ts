/**
 * Process and peer helpers the server benchmarks share (not a bench itself: run-all runs only *.bench.js):
 * child processes that say READY, waiting for a port, stopping a child, a loopback smtp-sink, and a raw clamd
 * INSTREAM timed on its own.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { freePort } from '../spec/helpers/ports.js';

export { freePort };

export const SMTP_SINK = '/usr/sbin/smtp-sink';
export const SMTP_SOURCE = '/usr/sbin/smtp-source';

/** Spawns `cmd args` and resolves once it prints READY on stdout; rejects (naming `what`) if it exits or takes 15 s. */
export function startReadyChild(cmd: string, args: readonly string[], what = cmd): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const t = setTimeout(() => reject(new Error(`${what} did not start: ${out}`)), 15_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) {
        clearTimeout(t);
        resolve(child);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited (${code}): ${out}`));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; throws after `timeoutMs`. */
export async function waitPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host: '127.0.0.1', port });
      s.on('connect', () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not listening`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM, then SIGKILL after 3 s; resolves when the child is gone. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(t);
}

/** smtp-sink on a free loopback port (as nobody when we are root), backlog 1024; resolves once it listens (killed if it never does). */
export async function startSinkProcess(): Promise<{ readonly port: number; readonly child: ChildProcess }> {
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const child = spawn(SMTP_SINK, [...(asRoot ? ['-u', 'nobody'] : []), '-h', 'sink.bench', `127.0.0.1:${port}`, '1024'], { stdio: 'ignore' });
  try {
    await waitPort(port);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return { port, child };
}

/** clamd's own time in ms for `data`: INSTREAM framed in `chunk`-byte pieces, written in one go, until the reply (must be OK). */
export async function rawInstream(socketPath: string, data: Buffer, chunk: number): Promise<number> {
  const framed: Buffer[] = [Buffer.from('zINSTREAM\0')];
  for (let off = 0; off < data.length; off += chunk) {
    const piece = data.subarray(off, Math.min(off + chunk, data.length));
    const h = Buffer.alloc(4);
    h.writeUInt32BE(piece.length);
    framed.push(h, piece);
  }
  framed.push(Buffer.alloc(4));
  const all = Buffer.concat(framed);
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const s = connect({ path: socketPath });
    let reply = '';
    s.on('connect', () => s.write(all));
    s.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (reply.includes('\0')) {
        s.destroy();
        if (!reply.includes('OK')) reject(new Error(`unexpected clamd reply ${reply}`));
        else resolve();
      }
    });
    s.on('error', reject);
  });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/**
 * smtp-source sending `messages` 10 KB messages over `sessions` parallel sessions to 127.0.0.1:`port` (with
 * `perConnection`, -d: many messages per connection); its wall time, and whether it exited 0. Bounded: 60 s.
 */
export function smtpSource(port: number, sessions: number, messages: number, perConnection: boolean): Promise<{ seconds: number; ok: boolean; out: string }> {
  const args = ['-l', '10240', '-m', String(messages), '-s', String(sessions), '-f', 'src@example.org', '-t', 'dst@example.net', ...(perConnection ? ['-d'] : []), `127.0.0.1:${port}`];
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    execFile(SMTP_SOURCE, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, ok: !err, out: String(stdout) + String(stderr) });
    });
  });
}

/** The whole machine's CPU time so far (all cores, from /proc/stat), in ms: busy (user+nice+system+irq+softirq+steal) and idle (idle+iowait). Zeros where /proc is absent. */
export function machineCpu(): { busyMs: number; idleMs: number } {
  try {
    const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
    const [, user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).map(Number);
    const tick = 10; // USER_HZ is 100 on Linux
    return { busyMs: (user + nice + system + irq + softirq + steal) * tick, idleMs: (idle + iowait) * tick };
  } catch {
    return { busyMs: 0, idleMs: 0 };
  }
}

/** The median (the mean of the two middle values for an even count); NaN for no values. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2;
}
