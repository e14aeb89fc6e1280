/**
 * Intercept door benchmark: smtp-source → [sluice | proxsmtpd | nothing] → smtp-sink, 10 KB messages, loopback only.
 *
 *   node .build/NAME/bench/intercept.bench.js          (or dist/bench/intercept.bench.js)
 *
 * Scenarios (every proxy under test runs in a fresh child process):
 *   direct          smtp-source straight to smtp-sink (the limit)
 *   sluice-accept   sluice fixed mode, accept-all ruleset (trace header at data, accept at eom)
 *   sluice-example  sluice fixed mode, the example ruleset from conf/rules (when it compiles without providers)
 *   sluice-2-workers  sluice-accept with `workers: 2`: the door accepts and hands sessions to two worker processes
 *   proxsmtpd       proxsmtpd without a filter command (when installed)
 *   haproxy-tcp     HAProxy (Debian's, when installed) in `mode tcp`, default threads: a C byte pipe with no SMTP, the
 *                   reference for what any proxy costs on this machine (node-pipe is the same for Node's sockets)
 * each at 1 session (1 message per connection), 16 sessions (1 per connection), and 16 sessions x many messages
 * per connection (-d). Then: idle concurrent sessions RSS (one process: as many as the fd limit allows, up to
 * 10,000; with workers: 2, 10,000, RSS of the whole process tree) and one 100 MB message (RSS growth of the sluice
 * process and MB/s).
 * After INTERCEPT_BENCH_PREHEAT seconds (default 15) of uncounted load (the VM's host gives an idle machine a
 * burst that would otherwise flatter whatever runs first), direct, node-pipe and sluice run INTERCEPT_BENCH_PASSES
 * times (default 5), interleaved. Each pass's rate is compared with direct's in the same pass and the median of those
 * ratios is printed; the table shows the best pass of each target with every pass listed.
 * Prints a table and one `BENCH_JSON {...}` line. Bounded: about 3 minutes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { haproxyAvailable, startHaproxy } from '../spec/helpers/haproxy.js';
import { freePort, median, SMTP_SINK, SMTP_SOURCE, smtpSource, startReadyChild, startSinkProcess, stopChild, waitPort } from './bench-util.js';

const PROXSMTPD = '/usr/sbin/proxsmtpd';
const HERE = fileURLToPath(import.meta.url);
const BUILD_ROOT = join(dirname(HERE), '..');

const ACCEPT_ALL = `rule nat at data: => add header "X-NAT-Received" "from [{client.ip}]:{client.port} by {proxy.name} id {session.id}"
rule ok at eom: => accept
`;

// ------------------------------------------------------------------------------------------------- child: door

interface DoorChildConfig {
  readonly listenPort: number;
  readonly upstreamPort: number;
  readonly rules: string;
  readonly sessions?: number;
  /** More than 1: sessions run in this many worker processes (the listener's `workers`). */
  readonly workers?: number;
}

/**
 * The configuration file intercept workers load (they read their rules and settings from it, as under `sluice run`):
 * the same listener, rules and limits as the door child, logging only errors, SQLite locks in `dir`.
 */
function workerConfig(dir: string, cfg: DoorChildConfig): string {
  writeFileSync(join(dir, 'bench.rules'), cfg.rules);
  const file = join(dir, 'sluice.yaml');
  writeFileSync(
    file,
    `hostname: sluice.bench
state_dir: ${join(dir, 'state')}
rules: [${join(dir, 'bench.rules')}]
log: { level: error }
spf: { enabled: false }
limits: { sessions: 100000, sessions_per_client: 100000, message_size: 200MB }
intercept:
  name: bench
  listen: 127.0.0.1:${cfg.listenPort}
  upstream: 127.0.0.1:${cfg.upstreamPort}
  workers: ${cfg.workers}
`,
  );
  return file;
}

async function runDoorChild(cfg: DoorChildConfig): Promise<void> {
  const { createInterceptDoor } = await import(join(BUILD_ROOT, 'lib/intercept/intercept-door.js'));
  const { compileRules, PolicyEngine, MemoryLockStore } = await import(join(BUILD_ROOT, 'lib/policy/index.js'));
  const { DEFAULT_LIMITS } = await import(join(BUILD_ROOT, 'lib/core/limits.js'));
  const { NULL_LOGGER } = await import(join(BUILD_ROOT, 'lib/core/logger.js'));
  const { NO_SCANNERS } = await import(join(BUILD_ROOT, 'lib/scanners/scanner.js'));
  const { NO_EFFECTS } = await import(join(BUILD_ROOT, 'lib/core/effects.js'));
  const locks = new MemoryLockStore();
  const policy = new PolicyEngine(compileRules([{ file: 'bench.rules', text: cfg.rules }]), { locks, clock: { now: () => Date.now() } }, { proxyName: 'sluice.bench' });
  const limits = { ...DEFAULT_LIMITS, sessions: 100_000, sessionsPerClient: 100_000, messageSize: 200 * 1024 * 1024 };
  const workDir = cfg.workers && cfg.workers > 1 ? mkdtempSync(join(tmpdir(), 'sluice-bench-workers-')) : undefined;
  const workers = workDir ? { count: cfg.workers!, entry: join(BUILD_ROOT, 'lib/daemon/intercept-worker-main.js'), args: [workerConfig(workDir, cfg), process.cwd(), 'bench'] } : undefined;
  const door = createInterceptDoor(
    { listeners: [{ listen: { ip: '127.0.0.1', port: cfg.listenPort }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: cfg.upstreamPort }, backlog: 4096 }], ...(workers ? { workers } : {}) },
    { policy, locks, scanners: NO_SCANNERS, effects: NO_EFFECTS, limits, logger: NULL_LOGGER, hostname: 'sluice.bench' },
  );
  await door.start();
  process.stdout.write('READY\n');
  process.on('SIGTERM', () => {
    void door.stop(100).then(() => {
      if (workDir) rmSync(workDir, { recursive: true, force: true });
      process.exit(0);
    });
  });
}

/** A plain Node byte pipe (no SMTP at all): what any proxy written on Node's sockets costs, for reference. */
async function runPipeChild(listenPort: number, upstreamPort: number): Promise<void> {
  const srv = createServer((c) => {
    c.setNoDelay(true);
    const u = connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.pipe(u);
    u.pipe(c);
  });
  await new Promise<void>((r) => srv.listen({ host: '127.0.0.1', port: listenPort, backlog: 4096 }, r));
  process.stdout.write('READY\n');
}

/** A greeting-only upstream for the idle test (holds connections open, answers QUIT). */
async function runIdleUpstreamChild(port: number): Promise<void> {
  const srv = createServer((s) => {
    s.on('error', () => undefined);
    s.write('220 idle.bench ESMTP\r\n');
    s.on('data', (d) => {
      if (/QUIT/i.test(d.toString())) s.end('221 bye\r\n');
    });
  });
  srv.maxConnections = 100_000;
  await new Promise<void>((r) => srv.listen({ host: '127.0.0.1', port, backlog: 4096 }, r));
  process.stdout.write('READY\n');
}

// ------------------------------------------------------------------------------------------------- helpers

function rssKb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function startDoor(upstreamPort: number, rules: string, workers = 1): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const cfg: DoorChildConfig = { listenPort: port, upstreamPort, rules, workers };
  const child = await startReadyChild(process.execPath, [HERE, '--door', JSON.stringify(cfg)]);
  return { port, child };
}

async function startProxsmtpd(upstreamPort: number, dir: string): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const conf = join(dir, 'proxsmtpd.conf');
  writeFileSync(conf, `Listen: 127.0.0.1:${port}\nOutAddress: 127.0.0.1:${upstreamPort}\nMaxConnections: 1024\nTimeOut: 60\nTempDirectory: ${dir}\n`);
  const child = spawn(PROXSMTPD, ['-d', '0', '-f', conf, '-p', join(dir, 'proxsmtpd.pid')], { stdio: 'ignore' });
  await waitPort(port);
  return { port, child };
}

function exampleRules(): string | undefined {
  const dir = join(BUILD_ROOT, '..', '..', 'conf', 'rules');
  const alt = join(process.cwd(), 'conf', 'rules');
  const d = existsSync(dir) ? dir : existsSync(alt) ? alt : undefined;
  if (!d) return undefined;
  const files = readdirSync(d).filter((f) => f.endsWith('.rules')).sort();
  if (files.length === 0) return undefined;
  return files.map((f) => readFileSync(join(d, f), 'utf8')).join('\n');
}

// ------------------------------------------------------------------------------------------------- scenarios

interface Row {
  target: string;
  load: string;
  messages: number;
  seconds: number;
  msgsPerSec: number;
  ok: boolean;
  note?: string;
}

const LOADS = [
  { name: '1 session, 1 msg/conn', sessions: 1, messages: 500, perConnection: false },
  { name: '16 sessions, 1 msg/conn', sessions: 16, messages: 8000, perConnection: false },
  { name: '16 sessions, many msg/conn', sessions: 16, messages: 12000, perConnection: true },
] as const;

/** Targets whose per-pass ratio to direct is printed (haproxy-tcp only where installed). */
const TARGETS_AGAINST_DIRECT = ['sluice-accept', 'sluice-example', 'sluice-2-workers', 'node-pipe', 'haproxy-tcp'] as const;
const HAPROXY = haproxyAvailable();

/** Throughput passes: direct, node-pipe and sluice run this many times, interleaved; the best pass counts. */
const PASSES = Math.max(1, Math.min(10, Number(process.env['INTERCEPT_BENCH_PASSES'] ?? 5) || 5));

/** Seconds of uncounted direct load before the first pass (INTERCEPT_BENCH_PREHEAT=0 turns it off). */
const PREHEAT_SECONDS = Math.max(0, Math.min(120, Number(process.env['INTERCEPT_BENCH_PREHEAT'] ?? 15) || 0));

/** Per pass, a target's rate over direct's in the same pass (the runs that met the same machine). */
function perPassRatios(passes: readonly Row[][], target: string, load: string): number[] {
  const out: number[] = [];
  for (const p of passes) {
    const mine = p.find((r) => r.target === target && r.load === load);
    const limit = p.find((r) => r.target === 'direct' && r.load === load);
    if (mine?.ok && limit?.ok && limit.msgsPerSec > 0) out.push(mine.msgsPerSec / limit.msgsPerSec);
  }
  return out;
}

/** Per target and load, the pass with the highest rate; `note` lists every pass. */
function bestOf(passes: readonly Row[][]): Row[] {
  const out: Row[] = [];
  for (const r of passes[0] ?? []) {
    const all = passes.map((p) => p.find((x) => x.target === r.target && x.load === r.load)).filter((x): x is Row => x !== undefined);
    const ok = all.filter((x) => x.ok);
    const best = (ok.length > 0 ? ok : all).reduce((a, b) => (b.msgsPerSec > a.msgsPerSec ? b : a));
    out.push({ ...best, ok: all.every((x) => x.ok), ...(all.length > 1 ? { note: `best of ${all.map((x) => x.msgsPerSec.toFixed(0)).join('/')}` } : {}) });
  }
  return out;
}

/** `scale` < 1 for slow peers (proxsmtpd), so the whole bench stays bounded. */
async function throughput(rows: Row[], target: string, port: number, scale = 1): Promise<void> {
  await smtpSource(port, 4, Math.max(8, Math.round(40 * scale)), false); // warm-up
  for (const load of LOADS) {
    const messages = Math.max(16, Math.round(load.messages * scale));
    const r = await smtpSource(port, load.sessions, messages, load.perConnection);
    rows.push({ target, load: load.name, messages, seconds: r.seconds, msgsPerSec: messages / r.seconds, ok: r.ok });
    if (!r.ok) process.stderr.write(`${target} ${load.name}: smtp-source failed: ${r.out.slice(0, 300)}\n`);
  }
}

/** The process and its children (intercept workers). */
function processTree(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no children file: a single process
  }
  return [pid, ...kids];
}

/** RSS of a process and its children. */
function treeRssKb(pid: number): number {
  return processTree(pid).reduce((n, p) => n + rssKb(p), 0);
}

interface IdleResult {
  sessions: number;
  workers: number;
  rssMb: number;
  baseMb: number;
  perSessionKb: number;
  est10kMb: number;
}

/**
 * Idle sessions held open through sluice. One process holds two sockets per session, so the fd limit caps it
 * below 10,000 sessions on a machine whose hard limit is 20,000; with `workers` the sessions spread over the
 * workers' own fd tables, and RSS is the whole process tree's.
 */
async function idleSessions(workers = 1): Promise<IdleResult> {
  const limit = fdLimits().soft;
  // The sluice child holds two sockets per session (client + upstream); keep headroom for everything else.
  const n = workers > 1 ? 10_000 : Math.min(10_000, Math.floor((limit - 300) / 2));
  const upPort = await freePort();
  const upstream = await startReadyChild(process.execPath, [HERE, '--idle-upstream', String(upPort)]);
  const door = await startDoor(upPort, ACCEPT_ALL, workers);
  const clients: Socket[] = [];
  try {
    const pid = door.child.pid!;
    const base = treeRssKb(pid);
    let greeted = 0;
    const batch = 500;
    for (let i = 0; i < n; i += batch) {
      await Promise.all(
        Array.from({ length: Math.min(batch, n - i) }, () =>
          new Promise<void>((resolve) => {
            const s = connect({ host: '127.0.0.1', port: door.port });
            s.on('error', () => resolve());
            s.once('data', () => {
              greeted++;
              resolve();
            });
            clients.push(s);
          }),
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 500));
    const rss = treeRssKb(pid);
    const perSessionKb = (rss - base) / Math.max(1, greeted);
    return { sessions: greeted, workers, rssMb: rss / 1024, baseMb: base / 1024, perSessionKb, est10kMb: (base + perSessionKb * 10_000) / 1024 };
  } finally {
    for (const s of clients) s.destroy();
    await stopChild(door.child);
    await stopChild(upstream);
  }
}

async function bigMessage(sinkPort: number, megabytes: number): Promise<{ mb: number; seconds: number; mbPerSec: number; rssGrowthMb: number; reply: string }> {
  const door = await startDoor(sinkPort, ACCEPT_ALL);
  try {
    const pid = door.child.pid!;
    const s = connect({ host: '127.0.0.1', port: door.port });
    let buf = '';
    const waiters: Array<() => void> = [];
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      while (/\r\n/.test(buf) && waiters.length) {
        const lines = buf.split('\r\n');
        const idx = lines.findIndex((l) => /^\d{3} /.test(l));
        if (idx < 0) break;
        buf = lines.slice(idx + 1).join('\r\n');
        waiters.shift()!();
      }
    });
    const next = (): Promise<void> => new Promise((r) => waiters.push(r));
    const cmd = async (line: string): Promise<void> => {
      const p = next();
      s.write(line + '\r\n');
      await p;
    };
    await next();
    await cmd('EHLO bench.test');
    await cmd('MAIL FROM:<big@example.org>');
    await cmd('RCPT TO:<dst@example.net>');
    await cmd('DATA');
    const base = rssKb(pid);
    const line = Buffer.from('x'.repeat(998) + '\r\n');
    const chunk = Buffer.concat(Array.from({ length: 64 }, () => line)); // 64 KB
    const total = megabytes * 1024 * 1024;
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, rssKb(pid))), 20);
    const t0 = process.hrtime.bigint();
    s.write('Subject: big\r\n\r\n');
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
    }
    let lastLine = '';
    const done = new Promise<void>((r) => waiters.push(r));
    s.on('data', (d: Buffer) => (lastLine = d.toString('latin1')));
    s.write('.\r\n');
    await done;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    clearInterval(sampler);
    peak = Math.max(peak, rssKb(pid));
    s.end('QUIT\r\n');
    return { mb: megabytes, seconds, mbPerSec: megabytes / seconds, rssGrowthMb: (peak - base) / 1024, reply: lastLine.trim() };
  } finally {
    await stopChild(door.child);
  }
}

/** Soft and hard RLIMIT_NOFILE of this process. */
function fdLimits(): { soft: number; hard: number } {
  const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const n = (x: string | undefined): number => (x === undefined ? 1024 : x === 'unlimited' ? 1 << 20 : Number(x));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/**
 * The idle-sessions scenario needs ~2 fds per session in the sluice child and 1 per session here and in the idle
 * upstream. If the soft limit is below what 10,000 sessions need and the hard limit allows more, re-run this
 * bench under prlimit(1) with the soft limit raised (children inherit it). Returns true when it did (and ran).
 */
async function raisedFdLimit(): Promise<boolean> {
  const want = 2 * 10_000 + 500;
  const { soft, hard } = fdLimits();
  if (soft >= want || hard <= soft || process.env['SLUICE_BENCH_PRLIMIT'] === '1' || !existsSync('/usr/bin/prlimit')) return false;
  const target = Math.min(hard, want);
  const child = spawn('/usr/bin/prlimit', [`--nofile=${target}:${hard}`, '--', process.execPath, HERE, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, SLUICE_BENCH_PRLIMIT: '1' } });
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  if (code !== 0) process.exitCode = code;
  return true;
}

// ------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === '--door') return await runDoorChild(JSON.parse(process.argv[3] ?? '{}') as DoorChildConfig);
  if (mode === '--idle-upstream') return await runIdleUpstreamChild(Number(process.argv[3]));
  if (mode === '--pipe') return await runPipeChild(Number(process.argv[3]), Number(process.argv[4]));
  if (await raisedFdLimit()) return;
  const notes: string[] = [];
  if (!existsSync(SMTP_SINK) || !existsSync(SMTP_SOURCE)) {
    process.stdout.write('intercept bench: smtp-sink/smtp-source not installed; skipped\n');
    process.stdout.write('BENCH_JSON ' + JSON.stringify({ bench: 'intercept', skipped: 'smtp-sink/smtp-source missing' }) + '\n');
    return;
  }
  const started = Date.now();
  if (!HAPROXY) notes.push('haproxy not installed: no haproxy-tcp reference rows');
  const sink = await startSinkProcess();
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const passes: Row[][] = [];
  try {
    const example = exampleRules();
    if (!example) notes.push('sluice-example skipped: no conf/rules/*.rules');
    if (PREHEAT_SECONDS > 0) {
      // The first seconds of load after the machine has idled for a minute run up to 1.6x faster than the same
      // load right after (the VM's host gives a burst; measured with Postfix alone: 756 then 471 msgs/s).
      // Pass 1's direct run would get it and set the limit: load the machine, uncounted, before anything is measured.
      const until = Date.now() + PREHEAT_SECONDS * 1000;
      while (Date.now() < until) await smtpSource(sink.port, 16, 8000, false);
    }
    for (let pass = 1; pass <= PASSES; pass++) {
      const rows: Row[] = [];
      await throughput(rows, 'direct', sink.port);
      {
        const port = await freePort();
        const pipe = await startReadyChild(process.execPath, [HERE, '--pipe', String(port), String(sink.port)]);
        await throughput(rows, 'node-pipe', port);
        await stopChild(pipe);
      }
      if (HAPROXY) {
        const port = await freePort();
        try {
          const h = await startHaproxy(`listen relay\n  bind 127.0.0.1:${port}\n  server sink 127.0.0.1:${sink.port}`, [{ host: '127.0.0.1', port }]);
          try {
            await throughput(rows, 'haproxy-tcp', port);
          } finally {
            await h.stop();
          }
        } catch (err) {
          if (pass === 1) notes.push(`haproxy-tcp skipped: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      {
        const d = await startDoor(sink.port, ACCEPT_ALL);
        await throughput(rows, 'sluice-accept', d.port);
        await stopChild(d.child);
      }
      {
        const d = await startDoor(sink.port, ACCEPT_ALL, 2);
        await throughput(rows, 'sluice-2-workers', d.port);
        await stopChild(d.child);
      }
      if (example) {
        try {
          const d = await startDoor(sink.port, example);
          await throughput(rows, 'sluice-example', d.port);
          await stopChild(d.child);
        } catch (err) {
          if (pass === 1) notes.push(`sluice-example skipped: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      passes.push(rows);
    }
    const rows = bestOf(passes);
    // proxsmtpd is slow (about 44 ms per message): one scaled-down pass.
    if (existsSync(PROXSMTPD)) {
      const p = await startProxsmtpd(sink.port, tmp);
      await throughput(rows, 'proxsmtpd', p.port, 0.1);
      await stopChild(p.child);
    } else notes.push('proxsmtpd not installed');
    const idle = await idleSessions();
    const idleWorkers = await idleSessions(2);
    const big = await bigMessage(sink.port, 100);

    const rate = (t: string, l: string): number => rows.find((r) => r.target === t && r.load === l)?.msgsPerSec ?? NaN;
    const addedMs = (1000 / rate('sluice-accept', LOADS[0].name)) - (1000 / rate('direct', LOADS[0].name));
    const ratio16 = rate('sluice-accept', LOADS[1].name) / rate('direct', LOADS[1].name);
    const ratio16d = rate('sluice-accept', LOADS[2].name) / rate('direct', LOADS[2].name);

    const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
    let out = '\nintercept bench: smtp-source → proxy → smtp-sink, 10 KB messages\n\n';
    out += pad('target', 18) + pad('load', 30) + pad('msgs', 7) + pad('seconds', 10) + pad('msgs/s', 9) + 'passes\n';
    for (const r of rows) out += pad(r.target, 18) + pad(r.load, 30) + pad(String(r.messages), 7) + pad(r.seconds.toFixed(2), 10) + pad(r.msgsPerSec.toFixed(0), 9) + (r.ok ? '' : '(FAILED) ') + (r.note ?? '') + '\n';
    const pct = (x: number): string => `${(100 * x).toFixed(0)} %`;
    const passRatios = Object.fromEntries(
      TARGETS_AGAINST_DIRECT.map((t) => [t, LOADS.slice(1).map((l) => perPassRatios(passes, t, l.name))]),
    ) as Record<string, number[][]>;
    const medianLine = (t: string): string => {
      const [one = [], many = []] = passRatios[t] ?? [];
      return `${t}: 1 msg/conn ${one.map(pct).join(' ')} (median ${pct(median(one))}); many msg/conn ${many.map(pct).join(' ')} (median ${pct(median(many))})`;
    };
    out += `\nadded per message at 1 session (sluice-accept vs direct): ${addedMs.toFixed(2)} ms   (target < 2 ms)\n`;
    out += `16 sessions, per pass (each against direct in the same pass, after ${PREHEAT_SECONDS} s of uncounted load):\n`;
    for (const t of TARGETS_AGAINST_DIRECT) if ((passRatios[t]?.[0]?.length ?? 0) > 0) out += `   ${medianLine(t)}\n`;
    out += `best pass against best pass, 16 sessions, 1 msg/conn: sluice/direct = ${(ratio16 * 100).toFixed(0)} %; many msg/conn: ${(ratio16d * 100).toFixed(0)} %   (target >= 50 %)\n`;
    out += `   (example ruleset: ${(100 * rate('sluice-example', LOADS[1].name) / rate('direct', LOADS[1].name)).toFixed(0)} % and ${(100 * rate('sluice-example', LOADS[2].name) / rate('direct', LOADS[2].name)).toFixed(0)} %)\n`;
    out += `   (a plain Node byte pipe, no SMTP: ${(100 * rate('node-pipe', LOADS[1].name) / rate('direct', LOADS[1].name)).toFixed(0)} % and ${(100 * rate('node-pipe', LOADS[2].name) / rate('direct', LOADS[2].name)).toFixed(0)} % of direct; sluice reaches ${(100 * rate('sluice-accept', LOADS[1].name) / rate('node-pipe', LOADS[1].name)).toFixed(0)} % and ${(100 * rate('sluice-accept', LOADS[2].name) / rate('node-pipe', LOADS[2].name)).toFixed(0)} % of the pipe)\n`;
    out += `idle sessions, one process: ${idle.sessions} concurrent (the fd limit allows no more): sluice RSS ${idle.rssMb.toFixed(0)} MB (base ${idle.baseMb.toFixed(0)} MB, ${idle.perSessionKb.toFixed(1)} KB/session; 10k estimate ${idle.est10kMb.toFixed(0)} MB)   (target < 600 MB)\n`;
    out += `idle sessions, workers: 2: ${idleWorkers.sessions} concurrent: RSS of the daemon and its workers ${idleWorkers.rssMb.toFixed(0)} MB (base ${idleWorkers.baseMb.toFixed(0)} MB, ${idleWorkers.perSessionKb.toFixed(1)} KB/session)   (target: 10,000 in < 600 MB)\n`;
    out += `100 MB message: ${big.seconds.toFixed(2)} s = ${big.mbPerSec.toFixed(0)} MB/s, sluice RSS growth ${big.rssGrowthMb.toFixed(1)} MB, reply "${big.reply}"   (targets >= 100 MB/s, < 64 MB)\n`;
    for (const n of notes) out += `note: ${n}\n`;
    out += `total bench time ${((Date.now() - started) / 1000).toFixed(0)} s\n`;
    process.stdout.write(out);
    const json = {
      bench: 'intercept',
      rows: rows.map((r) => ({ ...r, seconds: Number(r.seconds.toFixed(3)), msgsPerSec: Number(r.msgsPerSec.toFixed(1)) })),
      addedMsPerMessage1Session: Number(addedMs.toFixed(3)),
      ratio16Sessions: Number(ratio16.toFixed(3)),
      ratio16SessionsManyPerConn: Number(ratio16d.toFixed(3)),
      preheatSeconds: PREHEAT_SECONDS,
      perPassRatios16Sessions: Object.fromEntries(Object.entries(passRatios).map(([t, [one = [], many = []]]) => [t, { oneMsgPerConn: one.map((x) => Number(x.toFixed(3))), manyMsgPerConn: many.map((x) => Number(x.toFixed(3))), medianOne: Number(median(one).toFixed(3)), medianMany: Number(median(many).toFixed(3)) }])),
      idle: { sessions: idle.sessions, rssMb: Number(idle.rssMb.toFixed(1)), perSessionKb: Number(idle.perSessionKb.toFixed(2)), estimate10kMb: Number(idle.est10kMb.toFixed(1)) },
      idleWorkers: { workers: idleWorkers.workers, sessions: idleWorkers.sessions, rssMb: Number(idleWorkers.rssMb.toFixed(1)), baseMb: Number(idleWorkers.baseMb.toFixed(1)), perSessionKb: Number(idleWorkers.perSessionKb.toFixed(2)) },
      bigMessage: { mb: big.mb, seconds: Number(big.seconds.toFixed(3)), mbPerSec: Number(big.mbPerSec.toFixed(1)), rssGrowthMb: Number(big.rssGrowthMb.toFixed(1)), reply: big.reply },
      notes,
    };
    process.stdout.write('BENCH_JSON ' + JSON.stringify(json) + '\n');
  } finally {
    await stopChild(sink.child);
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`intercept bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
