/**
 * The protocol floor of the milter benchmark: bench/fixtures/milter-floor.c, built on the fly, answering Postfix
 * exactly as the sluice door does (the door's own OPTNEG reply, the same answered events, one added header at end
 * of message) at the least cost a process can have. See the C file for what it stands for.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { encodeCommand } from '../lib/milter/milter-codec.js';
import { POSTFIX_OPTNEG } from '../spec/helpers/milter-client.js';
import { repoRoot } from '../spec/helpers/paths.js';
import { run } from './milter-bench-util.js';

/** The trace header the floor adds: the example ruleset's, with a value of the length the door's has. */
export const FLOOR_HEADER = { name: 'X-NAT-Received', value: ' from [127.0.0.1]:48312 [ident-empty]\n\tby bench.sluice.test with TPROXY id 1763773182.12345' } as const;

/** Builds the floor milter into `dir`; the executable's path, or an error text. */
export async function buildFloor(dir: string): Promise<{ exe: string } | { error: string }> {
  const exe = join(dir, 'milter-floor');
  const cc = await run('cc', ['-O2', '-o', exe, join(repoRoot, 'bench', 'fixtures', 'milter-floor.c')], 60_000);
  return cc.code === 0 ? { exe } : { error: `cannot build bench/fixtures/milter-floor.c with cc: ${cc.out.slice(0, 200)}` };
}

/** Asks a running milter for its OPTNEG reply to what Postfix offers (version 6, every action, every flag). */
export function optnegReply(port: number, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no OPTNEG reply from the door'));
    }, timeoutMs);
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4 && got.length >= 4 + got.readUInt32BE(0)) {
        clearTimeout(timer);
        s.destroy();
        resolve(got.subarray(0, 4 + got.readUInt32BE(0)));
      }
    });
    s.write(encodeCommand(POSTFIX_OPTNEG));
  });
}

export interface FloorProcess {
  readonly child: ChildProcess;
  /** Where it listens, as Postfix's smtpd_milters names it ("inet:127.0.0.1:PORT" or "unix:PATH"). */
  readonly listen: string;
  /** CPU the process has used so far, in ms (from /proc: user + system). */
  cpuMs(): number;
}

/** Starts the floor on `listen` ("inet:PORT" or "unix:PATH"); resolves once it is listening. */
export function startFloor(exe: string, listen: string, reply: Buffer): Promise<FloorProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(exe, [listen, reply.toString('hex'), FLOOR_HEADER.name, FLOOR_HEADER.value], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`milter-floor on ${listen} did not start: ${err.slice(0, 200)}`));
    }, 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`milter-floor on ${listen} exited (${code}): ${err.slice(0, 200)}`));
    });
    child.stdout?.once('data', () => {
      clearTimeout(timer);
      resolve({ child, listen: listen.startsWith('inet:') ? `inet:127.0.0.1:${listen.slice('inet:'.length)}` : listen, cpuMs: () => processCpuMs(child.pid) });
    });
  });
}

/** User + system CPU of a process in ms, from /proc/PID/stat (clock ticks of 10 ms, as on Linux x86-64 and arm64). */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}
