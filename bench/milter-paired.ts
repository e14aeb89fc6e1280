/**
 * The milter benchmark's headline measurement: Postfix alone and Postfix with the sluice milter, in alternating
 * short blocks through ONE Postfix instance.
 *
 * The instance has five smtpd listeners that differ only in `smtpd_milters`: none (Postfix alone, the limit), the
 * milter door over TCP, and the milter door over a unix socket (both with the daemon's logger writing its
 * per-message records to a file, as `sluice run` does), and the protocol floor (bench/fixtures/milter-floor.c:
 * the same conversation with Postfix at the least cost a process can have) over TCP and over a unix socket.
 * Queue, cleanup, queue manager, delivery agents and smtp-sink are shared. After an untimed warm-up (two such
 * rounds of half the warm-up each), the blocks run in rounds (postfix, inet, unix, floor-inet, floor-unix, then
 * the reverse order), each block `blockMessages` messages from 16 parallel
 * smtp-source sessions, timed from its first submission to its last delivery seen in Postfix's log; a block starts
 * only once the previous one is delivered. The ratio of a round is (milter block rate / Postfix block rate) from blocks seconds
 * apart on the same warm instance, so the machine's minute-to-minute swings (Postfix alone varied 356–645 msgs/s
 * between runs of the earlier one-instance-per-scenario design) fall mostly on both sides of a ratio alike.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Door } from '../lib/daemon/door.js';
import { createDaemonLogger, type DaemonLogger } from '../lib/daemon/logger.js';
import { createMilterDoor } from '../lib/milter/milter-door.js';
import { freePort } from '../spec/helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../spec/helpers/postfix.js';
import { machineCpu, startSinkProcess } from './bench-util.js';
import { buildFloor, optnegReply, startFloor, type FloorProcess } from './milter-floor.js';
import { deps, exampleEngine, sendMessages, sentCounter } from './milter-bench-util.js';

export const PAIRED_VARIANTS = ['postfix', 'milter-inet', 'milter-unix', 'floor-inet', 'floor-unix'] as const;
export type PairedVariant = (typeof PAIRED_VARIANTS)[number];

export interface PairedBlock {
  readonly round: number;
  readonly variant: PairedVariant;
  readonly messages: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** CPU of this process (both doors and the harness) per message over the block, in ms. */
  readonly doorCpuMsPerMessage: number;
  /** The whole machine's busy CPU per message over the block, in ms. */
  readonly machineCpuMsPerMessage: number;
  /** Floor blocks: the floor process's CPU per message, in ms. */
  readonly floorCpuMsPerMessage?: number;
}

export interface PairedOptions {
  readonly rounds: number;
  readonly blockMessages: number;
  readonly warmupMessages: number;
  readonly bodyBytes: number;
  readonly sessions: number;
  readonly manyPerSession: boolean;
}

export interface PairedResult {
  readonly blocks: readonly PairedBlock[];
  readonly error?: string;
  /** Why the floor variants did not run, when they did not. */
  readonly floorMissing?: string;
}

export async function pairedScenario(o: PairedOptions): Promise<PairedResult> {
  if (!postfixAvailable) return { blocks: [], error: 'postfix (as root) not available' };
  const sink = await startSinkProcess();
  const doors: Door[] = [];
  const floors: Partial<Record<'floor-inet' | 'floor-unix', FloorProcess>> = {};
  let floorMissing: string | undefined;
  const result = (blocks: readonly PairedBlock[], error?: string): PairedResult => ({ blocks, ...(error ? { error } : {}), ...(floorMissing ? { floorMissing } : {}) });
  let pf: PostfixInstance | undefined;
  let log: DaemonLogger | undefined;
  // Postfix's smtpd and cleanup run as `postfix`: a world-traversable directory and a 0666 socket.
  const socketDir = mkdtempSync(join(tmpdir(), 'sluice-milter-paired-'));
  chmodSync(socketDir, 0o755);
  const unixPath = join(socketDir, 'milter.sock');
  try {
    const milterPort = await freePort();
    // sluice.yaml's defaults (delay_reject on, the daemon's logger at `info` in text format, here to a file: one
    // record per message), the example ruleset, one door per socket kind.
    log = createDaemonLogger({ level: 'info', format: 'text', file: join(socketDir, 'sluice.log') });
    doors.push(createMilterDoor({ listen: `inet:127.0.0.1:${milterPort}`, delayReject: true }, deps(exampleEngine(), log.logger)));
    doors.push(createMilterDoor({ listen: `unix:${unixPath}`, delayReject: true, socketMode: 0o666 }, deps(exampleEngine(), log.logger)));
    for (const d of doors) await d.start();
    // The floor answers with the door's own OPTNEG reply, so both have the same conversation with Postfix.
    try {
      const built = await buildFloor(socketDir);
      if ('error' in built) throw new Error(built.error);
      const reply = await optnegReply(milterPort);
      floors['floor-inet'] = await startFloor(built.exe, `inet:${await freePort()}`, reply);
      floors['floor-unix'] = await startFloor(built.exe, `unix:${join(socketDir, 'floor.sock')}`, reply);
    } catch (err) {
      floorMissing = err instanceof Error ? err.message : String(err);
    }
    const variants = PAIRED_VARIANTS.filter((v) => !v.startsWith('floor-') || floors[v as 'floor-inet' | 'floor-unix'] !== undefined);
    const ports = Object.fromEntries(await Promise.all(PAIRED_VARIANTS.map(async (v) => [v, await freePort()] as const))) as Record<PairedVariant, number>;
    const smtpd = (port: number, milters: string): string => `127.0.0.1:${port} inet n - n - - smtpd -o smtpd_milters=${milters}`;
    const pfOptions = {
      sink: false as const,
      snippets: ['milter'],
      smtpPort: ports.postfix,
      main: { relayhost: `[127.0.0.1]:${sink.port}`, default_process_limit: '40', smtpd_client_connection_count_limit: '0', smtpd_client_connection_rate_limit: '0', smtpd_milters: '', non_smtpd_milters: '' },
      master: [
        smtpd(ports['milter-inet'], `inet:127.0.0.1:${milterPort}`),
        smtpd(ports['milter-unix'], `unix:${unixPath}`),
        ...(floors['floor-inet'] ? [smtpd(ports['floor-inet'], floors['floor-inet'].listen)] : []),
        ...(floors['floor-unix'] ? [smtpd(ports['floor-unix'], floors['floor-unix'].listen)] : []),
      ],
    };
    // A start can miss the harness's 10 s window on a loaded machine (seen now and then): one more try.
    pf = await startPostfix(pfOptions).catch(() => startPostfix(pfOptions));
    const counter = sentCounter(pf);
    const send = (variant: PairedVariant, m: number): Promise<{ code: number; out: string }> =>
      sendMessages(ports[variant], { sessions: o.sessions, messages: m, bodyBytes: o.bodyBytes, manyPerSession: o.manyPerSession });
    /** Sends `m` messages through `variant` and waits until Postfix has delivered them all; undefined on success. */
    const block = async (variant: PairedVariant, m: number): Promise<string | undefined> => {
      const target = counter() + m;
      const src = await send(variant, m);
      if (src.code !== 0) return `smtp-source to ${variant} failed: ${src.out.slice(0, 300)}`;
      const deadline = Date.now() + 120_000;
      while (counter() < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      return counter() < target ? `${variant}: only ${m - (target - counter())}/${m} delivered in time` : undefined;
    };
    // Warm-up: two untimed rounds of half the warm-up each. Both doors run in this one process, so the code they
    // share meets TCP and unix sockets in turn; one long pass per door left the first timed TCP block slower
    // (0.59-0.67 against ~0.45 ms of CPU per message) while V8 re-optimised for both.
    const half = Math.ceil(o.warmupMessages / 2);
    for (let pass = 0; pass < 2 && half > 0; pass++) {
      for (const v of variants) {
        const err = await block(v, half);
        if (err) return result([], `warm-up: ${err}`);
      }
    }
    const blocks: PairedBlock[] = [];
    for (let r = 0; r < o.rounds; r++) {
      const order = r % 2 === 0 ? variants : [...variants].reverse();
      for (const variant of order) {
        const floor = variant === 'floor-inet' || variant === 'floor-unix' ? floors[variant] : undefined;
        const floorCpu0 = floor?.cpuMs() ?? 0;
        const cpu0 = process.cpuUsage();
        const machine0 = machineCpu();
        const t0 = process.hrtime.bigint();
        const err = await block(variant, o.blockMessages);
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        if (err) return result(blocks, err);
        const cpu = process.cpuUsage(cpu0);
        const machine1 = machineCpu();
        blocks.push({
          round: r,
          variant,
          messages: o.blockMessages,
          seconds,
          perSecond: o.blockMessages / seconds,
          doorCpuMsPerMessage: (cpu.user + cpu.system) / 1000 / o.blockMessages,
          machineCpuMsPerMessage: (machine1.busyMs - machine0.busyMs) / o.blockMessages,
          ...(floor ? { floorCpuMsPerMessage: (floor.cpuMs() - floorCpu0) / o.blockMessages } : {}),
        });
      }
    }
    return result(blocks);
  } finally {
    await pf?.stop();
    for (const f of Object.values(floors)) f.child.kill('SIGKILL');
    for (const d of doors) await d.stop(1000);
    await log?.flush();
    sink.child.kill('SIGKILL');
    rmSync(socketDir, { recursive: true, force: true });
  }
}

/** Per round, (variant's block rate / Postfix's block rate in the same round). */
export function pairedRatios(blocks: readonly PairedBlock[], variant: PairedVariant): number[] {
  const out: number[] = [];
  const rounds = new Set(blocks.map((b) => b.round));
  for (const r of rounds) {
    const base = blocks.find((b) => b.round === r && b.variant === 'postfix');
    const mine = blocks.find((b) => b.round === r && b.variant === variant);
    if (base && mine && base.perSecond > 0) out.push(mine.perSecond / base.perSecond);
  }
  return out;
}

/** All of a variant's blocks pooled: total messages / total seconds. */
export function pooledRate(blocks: readonly PairedBlock[], variant: PairedVariant): number {
  const mine = blocks.filter((b) => b.variant === variant);
  const seconds = mine.reduce((s, b) => s + b.seconds, 0);
  return seconds > 0 ? mine.reduce((s, b) => s + b.messages, 0) / seconds : NaN;
}
