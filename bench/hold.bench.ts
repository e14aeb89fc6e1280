/**
 * Hold mode benchmark: smtp-source → sluice intercept door → smtp-sink, 10 KB messages, loopback only.
 *
 *   node .build/NAME/bench/hold.bench.js          (or dist/bench/hold.bench.js)
 *
 * Scenarios, each door in a fresh child process, same ruleset (trace header at data, an eom header, verdict
 * headers on but no scanners, so the cost measured is the door's own):
 *   streaming     today's intercept door (the dot held, the message streamed)
 *   hold-memory   holdMessagesUpTo 1 MB, held in memory (holdMemory 64 KiB > 10 KB)
 *   hold-spill    holdMessagesUpTo 1 MB, holdMemory 4 KiB: every message spills to a private 0600 file
 * each at 1 session (1 message per connection) and 16 sessions x many messages per connection (-d).
 * Prints a table and one `BENCH_JSON {...}` line. Bounded: well under 3 minutes.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, SMTP_SINK, SMTP_SOURCE, smtpSource, startReadyChild, startSinkProcess, stopChild } from './bench-util.js';

const HERE = fileURLToPath(import.meta.url);
const BUILD_ROOT = join(dirname(HERE), '..');

const RULES = `rule nat at data: => add header "X-NAT-Received" "from [{client.ip}]:{client.port} by {proxy.name}"
rule stamp at eom: => add header "X-Checked" "yes"
`;

interface DoorChildConfig {
  readonly listenPort: number;
  readonly upstreamPort: number;
  readonly hold: number;
  readonly holdMemory: number;
  readonly holdDir: string;
}

async function runDoorChild(cfg: DoorChildConfig): Promise<void> {
  const { createInterceptDoor } = await import(join(BUILD_ROOT, 'lib/intercept/intercept-door.js'));
  const { compileRules, PolicyEngine, MemoryLockStore } = await import(join(BUILD_ROOT, 'lib/policy/index.js'));
  const { DEFAULT_LIMITS } = await import(join(BUILD_ROOT, 'lib/core/limits.js'));
  const { NULL_LOGGER } = await import(join(BUILD_ROOT, 'lib/core/logger.js'));
  const { NO_SCANNERS } = await import(join(BUILD_ROOT, 'lib/scanners/scanner.js'));
  const { NO_EFFECTS } = await import(join(BUILD_ROOT, 'lib/core/effects.js'));
  const locks = new MemoryLockStore();
  const policy = new PolicyEngine(compileRules([{ file: 'bench.rules', text: RULES }]), { locks, clock: { now: () => Date.now() } }, { proxyName: 'sluice.bench', verdictHeaders: true });
  const limits = { ...DEFAULT_LIMITS, sessions: 100_000, sessionsPerClient: 100_000 };
  const door = createInterceptDoor(
    {
      listeners: [{ listen: { ip: '127.0.0.1', port: cfg.listenPort }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: cfg.upstreamPort }, backlog: 4096 }],
      ...(cfg.hold > 0 ? { holdMessagesUpTo: cfg.hold, holdMemory: cfg.holdMemory, holdDir: cfg.holdDir } : {}),
    },
    { policy, locks, scanners: NO_SCANNERS, effects: NO_EFFECTS, limits, logger: NULL_LOGGER, hostname: 'sluice.bench' },
  );
  await door.start();
  process.stdout.write('READY\n');
  process.on('SIGTERM', () => {
    void door.stop(100).then(() => process.exit(0));
  });
}

interface Row {
  target: string;
  load: string;
  messages: number;
  seconds: number;
  msgsPerSec: number;
  msPerMsg: number;
  ok: boolean;
}

const LOADS = [
  { name: '1 session, 1 msg/conn', sessions: 1, messages: 300, perConnection: false },
  { name: '16 sessions, many msg/conn', sessions: 16, messages: 3000, perConnection: true },
] as const;

const TARGETS = [
  { name: 'streaming', hold: 0, holdMemory: 0 },
  { name: 'hold-memory', hold: 1024 * 1024, holdMemory: 64 * 1024 },
  { name: 'hold-spill', hold: 1024 * 1024, holdMemory: 4 * 1024 },
] as const;

async function main(): Promise<void> {
  if (!existsSync(SMTP_SINK) || !existsSync(SMTP_SOURCE)) {
    process.stdout.write('hold bench skipped: smtp-sink/smtp-source (postfix) not installed\n');
    process.stdout.write(`BENCH_JSON ${JSON.stringify({ bench: 'hold', skipped: 'postfix tools missing' })}\n`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-hold-bench-'));
  const rows: Row[] = [];
  let sink: Awaited<ReturnType<typeof startSinkProcess>> | undefined;
  try {
    sink = await startSinkProcess();
    const sinkPort = sink.port;
    for (const target of TARGETS) {
      const port = await freePort();
      const cfg: DoorChildConfig = { listenPort: port, upstreamPort: sinkPort, hold: target.hold, holdMemory: target.holdMemory, holdDir: dir };
      const child = await startReadyChild(process.execPath, [HERE, '--door', JSON.stringify(cfg)], 'door');
      try {
        await smtpSource(port, 4, 40, false); // warm-up
        for (const load of LOADS) {
          const r = await smtpSource(port, load.sessions, load.messages, load.perConnection);
          rows.push({ target: target.name, load: load.name, messages: load.messages, seconds: r.seconds, msgsPerSec: load.messages / r.seconds, msPerMsg: (r.seconds * 1000) / load.messages, ok: r.ok });
          if (!r.ok) process.stderr.write(`${target.name} ${load.name}: smtp-source failed: ${r.out.slice(0, 300)}\n`);
        }
      } finally {
        await stopChild(child);
      }
    }
  } finally {
    sink?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  const pad = (s: string, n: number): string => s.padEnd(n);
  process.stdout.write(`\n${pad('target', 14)}${pad('load', 30)}${pad('msgs', 7)}${pad('msg/s', 10)}${pad('ms/msg', 9)}ok\n`);
  for (const r of rows) process.stdout.write(`${pad(r.target, 14)}${pad(r.load, 30)}${pad(String(r.messages), 7)}${pad(r.msgsPerSec.toFixed(0), 10)}${pad(r.msPerMsg.toFixed(2), 9)}${r.ok ? 'yes' : 'NO'}\n`);
  process.stdout.write(`BENCH_JSON ${JSON.stringify({ bench: 'hold', rows })}\n`);
}

const flag = process.argv[2];
if (flag === '--door') void runDoorChild(JSON.parse(process.argv[3] ?? '{}') as DoorChildConfig);
else
  void main().catch((err: unknown) => {
    process.stderr.write(`hold bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
