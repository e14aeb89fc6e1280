/**
 * Doors with and without clamd (issue 6): what virus scanning costs a door, and whether a door adds anything to
 * clamd's own time on a large message. Loopback only; one private clamd (spec/helpers/clamd.ts: a one-signature
 * database, so clamd's matching work is small and the numbers show the plumbing), bounded in time.
 *
 *   node .build/NAME/bench/scan-doors.bench.js         (or dist/bench/scan-doors.bench.js)
 *
 * Every door under test runs in a fresh child process (this file re-run with `--door JSON`); this process drives
 * the load. The same ruleset serves every scenario (trace header at data, virus → 550, scanner failed → 451), so
 * "with clamd" differs from "without" only by the ScannerSet the door gets.
 *   0. clamd alone     100 KB messages on a plain socket (zINSTREAM), 1 and 8 in flight: the reference.
 *   1. intercept-100k  smtp-source → intercept door (fixed mode) → smtp-sink, 100 KB messages, 1 message per
 *                      connection, at 1 and 8 parallel sessions, without vs with clamd (INSTREAM, Unix socket);
 *                      plus 1 session from a Node client (many messages per connection, the same kind of bytes
 *                      as the clamd-alone rows).
 *   2. milter-postfix  smtp-source → private Postfix with the sluice milter → smtp-sink, 100 KB messages,
 *                      8 sessions, without vs with clamd (msgs/s = first submission → last `status=sent`).
 *      milter-replay   the milter door alone: a Node milter client in this process replays 100 KB messages' milter
 *                      packets (as Postfix sends them, honouring the negotiated NO and NR bits), 8 at once.
 *   3. large-10mb      one 10 MB message through the intercept door with clamd (first body byte written → the
 *                      final reply to the dot) vs clamd's own zINSTREAM time for 10 MB (same body) on a plain socket,
 *                      alternated, median of 7 (target: within 1.2x). The door without clamd is measured too.
 *                      It runs first, on the settled machine, before the throughput passes.
 * Before each "with clamd" measurement an EICAR message goes through the same door and must be refused (so the
 * scanning path is known to be live). Every message is unique (clamd answers repeated content from its cache).
 * The throughput scenarios run PASSES times, interleaved; the best pass counts (the machine is shared).
 * Prints a table and one `BENCH_JSON {...}` line.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { loadavg } from 'node:os';
import { DEFAULT_LIMITS } from '../lib/core/limits.js';
import { NULL_LOGGER } from '../lib/core/logger.js';
import { NO_EFFECTS } from '../lib/core/effects.js';
import type { Door, DoorDeps } from '../lib/daemon/door.js';
import { createInterceptDoor } from '../lib/intercept/intercept-door.js';
import { decodeReply, encodeCommand, PacketReader, type MilterCommand, type MilterReply } from '../lib/milter/milter-codec.js';
import { Proto } from '../lib/milter/milter-constants.js';
import { createMilterDoor } from '../lib/milter/milter-door.js';
import { compileRules, MemoryLockStore, PolicyEngine } from '../lib/policy/index.js';
import { createScannerSet } from '../lib/scanners/scanner-set.js';
import { NO_SCANNERS } from '../lib/scanners/scanner.js';
import { clamdAvailable, startClamd } from '../spec/helpers/clamd.js';
import { postfixAvailable, startPostfix } from '../spec/helpers/postfix.js';
import { EICAR } from '../spec/helpers/scan-samples.js';
import { freePort, median, rawInstream as rawInstreamChunked, SMTP_SINK, SMTP_SOURCE, startReadyChild, startSinkProcess, stopChild } from './bench-util.js';

const SELF = fileURLToPath(import.meta.url);
const KB100 = 100 * 1024;
const MB10 = 10 * 1024 * 1024;
const CLAMD_CHUNK = 64 * 1024;
const N1 = Number(process.env['SCAN_BENCH_N1'] ?? 150);
const N8 = Number(process.env['SCAN_BENCH_N8'] ?? 600);
const N_POSTFIX = Number(process.env['SCAN_BENCH_NPOSTFIX'] ?? 300);
const LARGE_RUNS = 7;
/** Throughput scenarios run this often, interleaved; the best run counts (a busy neighbour only ever slows a run). */
const PASSES = Number(process.env['SCAN_BENCH_PASSES'] ?? 3);

const RULES = `rule trace at data: => add header "X-Sluice-Scan" "by {proxy.name} id {session.id}"
rule virus-found at eom: virus => reject 550 5.7.1 "Malware found ({virus.name})"
rule scanner-failed at eom: scanner(clamd) failed => tempfail 451 4.3.0 "Scanner failed, try again later"
`;

// ------------------------------------------------------------------------------------------------ door child

interface DoorConfig {
  readonly kind: 'intercept' | 'milter';
  readonly port: number;
  readonly upstreamPort?: number;
  /** clamd's Unix socket; absent = no scanners. */
  readonly clamd?: string;
}

async function runDoor(cfg: DoorConfig): Promise<void> {
  const locks = new MemoryLockStore();
  const policy = new PolicyEngine(compileRules([{ file: 'scan-bench.rules', text: RULES }]), { locks, clock: { now: () => Date.now() } }, { proxyName: 'sluice.bench' });
  const scanners = cfg.clamd ? createScannerSet({ clamd: { address: cfg.clamd, timeout: 60_000, maxSize: 25 * 1024 * 1024 } }, NULL_LOGGER) : NO_SCANNERS;
  const limits = { ...DEFAULT_LIMITS, sessions: 10_000, sessionsPerClient: 10_000, messageSize: 50 * 1024 * 1024 };
  const deps: DoorDeps = { policy, locks, scanners, effects: NO_EFFECTS, limits, logger: NULL_LOGGER, hostname: 'sluice.bench' };
  const door: Door =
    cfg.kind === 'intercept'
      ? createInterceptDoor({ listeners: [{ listen: { ip: '127.0.0.1', port: cfg.port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: cfg.upstreamPort ?? 0 }, backlog: 1024 }] }, deps)
      : createMilterDoor({ listen: `inet:127.0.0.1:${cfg.port}` }, deps);
  await door.start();
  process.stdout.write('READY\n');
  process.on('SIGTERM', () => {
    void door
      .stop(200)
      .then(() => scanners.close())
      .then(() => process.exit(0));
  });
}

// ------------------------------------------------------------------------------------------------ processes

interface Child {
  readonly port: number;
  readonly child: ChildProcess;
}

async function startDoor(kind: DoorConfig['kind'], clamd: string | undefined, upstreamPort?: number): Promise<Child> {
  const port = await freePort();
  const cfg: DoorConfig = { kind, port, ...(upstreamPort !== undefined ? { upstreamPort } : {}), ...(clamd ? { clamd } : {}) };
  const child = await startReadyChild(process.execPath, [SELF, '--door', JSON.stringify(cfg)], 'door');
  return { port, child };
}

function rssKb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function smtpSource(port: number, sessions: number, messages: number): Promise<{ seconds: number; ok: boolean; out: string }> {
  const args = ['-l', String(KB100), '-m', String(messages), '-s', String(sessions), '-f', 'src@example.org', '-t', 'dst@example.net', '-M', 'client.example.org', `127.0.0.1:${port}`];
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    execFile(SMTP_SOURCE, args, { timeout: 90_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ seconds: Number(process.hrtime.bigint() - t0) / 1e9, ok: !err && !/error|fatal|reject/i.test(String(stderr)), out: String(stdout) + String(stderr) });
    });
  });
}

// ------------------------------------------------------------------------------------------------ SMTP client

/** A minimal SMTP client for single transactions: waits for each final reply line. */
class SmtpClient {
  private buf = '';
  private readonly replies: string[] = [];
  private waiter: (() => void) | undefined;
  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      for (let i = this.buf.indexOf('\r\n'); i >= 0; i = this.buf.indexOf('\r\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        if (/^\d{3}( |$)/.test(line)) this.replies.push(line);
      }
      if (this.replies.length > 0 && this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.replies.push('000 connection closed');
      this.waiter?.();
    });
  }

  static async open(port: number): Promise<SmtpClient> {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    const c = new SmtpClient(s);
    await c.reply();
    return c;
  }

  async reply(timeoutMs = 60_000): Promise<string> {
    if (this.replies.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no SMTP reply in time')), timeoutMs);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.replies.shift() ?? '';
  }

  async cmd(line: string): Promise<string> {
    this.socket.write(line + '\r\n');
    return await this.reply();
  }

  /** MAIL, RCPT, DATA; throws unless each is accepted. */
  async begin(): Promise<void> {
    for (const [line, want] of [['MAIL FROM:<src@example.org>', '2'], ['RCPT TO:<dst@example.net>', '2'], ['DATA', '3']] as const) {
      const r = await this.cmd(line);
      if (!r.startsWith(want)) throw new Error(`${line}: ${r}`);
    }
  }

  /** Writes the (dot-safe) message with backpressure, then the dot; returns ms from the first byte to the reply. */
  async send(message: Buffer): Promise<{ ms: number; reply: string }> {
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < message.length; off += CLAMD_CHUNK) {
      if (!this.socket.write(message.subarray(off, Math.min(off + CLAMD_CHUNK, message.length)))) await new Promise((r) => this.socket.once('drain', r));
    }
    this.socket.write('.\r\n');
    const reply = await this.reply(120_000);
    return { ms: Number(process.hrtime.bigint() - t0) / 1e6, reply };
  }

  close(): void {
    this.socket.end('QUIT\r\n');
  }
}

const bodies = new Map<number, Buffer>();
let serial = 0;

/**
 * A message of about `size` bytes (or around `body`) with a unique Message-ID. clamd caches verdicts by content
 * hash: a message sent twice is answered from the cache the second time (measured: a 100 KB message ~1 ms instead
 * of ~3.5 ms, 10 MB ~40 ms instead of ~210 ms), so every message in this bench differs.
 */
function message(size: number, body?: string): Buffer {
  const head = Buffer.from(`From: bench@example.org\r\nTo: dst@example.net\r\nSubject: scan bench\r\nMessage-ID: <scan-bench.${process.pid}.${Date.now()}.${++serial}@example.org>\r\n\r\n`, 'latin1');
  if (body !== undefined) return Buffer.concat([head, Buffer.from(body + '\r\n', 'latin1')]);
  let b = bodies.get(size);
  if (!b) {
    const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incid\r\n';
    b = Buffer.from(line.repeat(Math.max(1, Math.round((size - head.length) / line.length))), 'latin1');
    bodies.set(size, b);
  }
  return Buffer.concat([head, b]);
}

/** One EICAR message through the door: the reply (must be 550 when scanning is live). */
async function eicarThroughIntercept(port: number): Promise<string> {
  const c = await SmtpClient.open(port);
  try {
    await c.cmd('EHLO bench.example.org');
    await c.begin();
    return (await c.send(message(0, EICAR))).reply;
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------------------------------------ clamd raw

/** clamd's own time for `data`: the framed bytes written in one go, until the reply. */
function rawInstream(socketPath: string, data: Buffer): Promise<number> {
  return rawInstreamChunked(socketPath, data, CLAMD_CHUNK);
}

/** clamd alone: 100 KB messages per second on a plain socket, `inFlight` at once, for `seconds`. */
async function rawRate(socketPath: string, inFlight: number, seconds: number, rows: Rate[]): Promise<void> {
  await rawInstream(socketPath, message(KB100));
  let n = 0;
  const t0 = Date.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < end) {
        await rawInstream(socketPath, message(KB100));
        n++;
      }
    }),
  );
  const s = (Date.now() - t0) / 1000;
  rows.push({ target: 'clamd alone (zINSTREAM)', load: `${inFlight} in flight, plain socket`, messages: n, seconds: s, msgsPerSec: n / s, ok: true });
}

// ------------------------------------------------------------------------------------------------ milter replay

/** The packets Postfix would send for one message, step by step; `no`/`nr` are the Proto bits for the step. */
interface Step {
  readonly cmds: MilterCommand[];
  readonly no?: number;
  readonly nr?: number;
  readonly final?: boolean;
}

function milterSteps(msg: Buffer): Step[] {
  const text = msg.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  const headers = text
    .slice(0, split)
    .split('\r\n')
    .map((l) => {
      const i = l.indexOf(':');
      return { type: 'header', name: l.slice(0, i), value: l.slice(i + 1).trimStart() } as MilterCommand;
    });
  const body = msg.subarray(split + 4);
  const chunks: MilterCommand[] = [];
  for (let off = 0; off < body.length; off += 65535) chunks.push({ type: 'body', chunk: body.subarray(off, Math.min(off + 65535, body.length)) });
  return [
    { cmds: [{ type: 'macro', stage: 'C', macros: [['j', 'mx.bench'], ['{client_addr}', '127.0.0.1']] }, { type: 'connect', hostname: 'client.example.org', family: 'inet', port: 40000, address: '127.0.0.1' }], no: Proto.NOCONNECT, nr: Proto.NR_CONN },
    { cmds: [{ type: 'helo', name: 'client.example.org' }], no: Proto.NOHELO, nr: Proto.NR_HELO },
    { cmds: [{ type: 'macro', stage: 'M', macros: [['i', 'BENCH1']] }, { type: 'mail', args: ['<src@example.org>'] }], no: Proto.NOMAIL, nr: Proto.NR_MAIL },
    { cmds: [{ type: 'rcpt', args: ['<dst@example.net>'] }], no: Proto.NORCPT, nr: Proto.NR_RCPT },
    { cmds: [{ type: 'data' }], no: Proto.NODATA, nr: Proto.NR_DATA },
    ...headers.map((h) => ({ cmds: [h], no: Proto.NOHDRS, nr: Proto.NR_HDR })),
    { cmds: [{ type: 'eoh' }], no: Proto.NOEOH, nr: Proto.NR_EOH },
    ...chunks.map((c) => ({ cmds: [c], no: Proto.NOBODY, nr: Proto.NR_BODY })),
    { cmds: [{ type: 'macro', stage: 'E', macros: [['i', 'BENCH1']] }, { type: 'eob', chunk: Buffer.alloc(0) }], final: true },
  ];
}

class MilterConn {
  private readonly reader = new PacketReader(64 * 1024 * 1024);
  private readonly pending: MilterReply[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;
  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.reader.push(d);
      for (let p = this.reader.next(); p !== undefined; p = this.reader.next()) {
        if (!('code' in p)) throw new Error('bad milter packet from the door');
        const r = decodeReply(p);
        if ('message' in r) throw new Error('bad milter reply from the door');
        this.pending.push(r);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  static async open(port: number): Promise<MilterConn> {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return new MilterConn(s);
  }

  send(cmds: readonly MilterCommand[]): void {
    this.socket.write(Buffer.concat(cmds.map((c) => encodeCommand(c))));
  }

  async reply(): Promise<MilterReply> {
    while (this.pending.length === 0) {
      if (this.closed) throw new Error('milter connection closed');
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no milter reply within 60 s')), 60_000);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    const r = this.pending.shift()!;
    return r.type === 'progress' ? await this.reply() : r;
  }

  close(): void {
    this.socket.destroy();
  }
}

const FINAL = new Set(['accept', 'continue', 'reject', 'tempfail', 'discard', 'replycode', 'skip']);

/** One message over one milter connection, as Postfix would send it; returns the final eom reply type (+text). */
async function milterMessage(port: number, steps: readonly Step[]): Promise<string> {
  const c = await MilterConn.open(port);
  try {
    c.send([{ type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }]);
    const neg = await c.reply();
    if (neg.type !== 'optneg') throw new Error(`expected optneg, got ${neg.type}`);
    const proto = neg.protocol;
    let skipBody = false;
    for (const step of steps) {
      if (step.no !== undefined && (proto & step.no) !== 0) continue;
      if (skipBody && step.cmds[0]?.type === 'body') continue;
      c.send(step.cmds);
      if (step.final) {
        for (;;) {
          const r = await c.reply();
          if (FINAL.has(r.type)) return r.type === 'replycode' ? `replycode ${r.text}` : r.type;
        }
      }
      if (step.nr !== undefined && (proto & step.nr) !== 0) continue;
      const r = await c.reply();
      if (r.type === 'skip') skipBody = true;
      else if (r.type === 'accept') return 'accept'; // nothing later needs the message (no eom rule, no scanner)
      else if (r.type !== 'continue') return `early ${r.type}`;
    }
    return 'no eom';
  } finally {
    c.send([{ type: 'quit' }]);
    c.close();
  }
}

async function milterReplay(port: number, sessions: number, seconds: number): Promise<{ perSecond: number; messages: number; bad: string[] }> {
  await milterMessage(port, milterSteps(message(KB100))); // warm-up
  const bad: string[] = [];
  let n = 0;
  const t0 = Date.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: sessions }, async () => {
      while (Date.now() < end) {
        const r = await milterMessage(port, milterSteps(message(KB100)));
        if (r !== 'continue' && r !== 'accept') bad.push(r);
        n++;
      }
    }),
  );
  return { perSecond: n / ((Date.now() - t0) / 1000), messages: n, bad: bad.slice(0, 3) };
}

// ------------------------------------------------------------------------------------------------ scenarios

interface Rate {
  readonly target: string;
  readonly load: string;
  readonly messages: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly ok: boolean;
  readonly note?: string;
}

async function interceptRates(sinkPort: number, clamd: string | undefined, rows: Rate[]): Promise<void> {
  const target = clamd ? 'intercept+clamd' : 'intercept';
  const door = await startDoor('intercept', clamd, sinkPort);
  try {
    let note: string | undefined;
    if (clamd) {
      const r = await eicarThroughIntercept(door.port);
      note = `EICAR: ${r}`;
      if (!r.startsWith('550')) throw new Error(`EICAR through the intercept door was not refused: ${r}`);
    }
    await smtpSource(door.port, 4, 40); // warm-up
    {
      // The same bytes the clamd-alone rows send, one session, many messages per connection: door + clamd vs clamd.
      const c = await SmtpClient.open(door.port);
      await c.cmd('EHLO bench.example.org');
      const n = N1;
      const t0 = process.hrtime.bigint();
      let ok = true;
      for (let i = 0; i < n; i++) {
        await c.begin();
        const r = await c.send(message(KB100));
        if (!r.reply.startsWith('250')) ok = false;
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      c.close();
      rows.push({ target, load: '1 session, Node client, many/conn', messages: n, seconds, msgsPerSec: n / seconds, ok });
    }
    for (const [sessions, messages] of [[1, N1], [8, N8]] as const) {
      const r = await smtpSource(door.port, sessions, messages);
      if (!r.ok) process.stderr.write(`${target} ${sessions} sessions: smtp-source: ${r.out.slice(0, 400)}\n`);
      rows.push({ target, load: `${sessions} session${sessions > 1 ? 's' : ''}, 1 msg/conn`, messages, seconds: r.seconds, msgsPerSec: messages / r.seconds, ok: r.ok, ...(note ? { note } : {}) });
    }
  } finally {
    await stopChild(door.child);
  }
}

async function milterPostfixRate(clamd: string | undefined, rows: Rate[]): Promise<void> {
  const target = clamd ? 'postfix+milter+clamd' : 'postfix+milter';
  const sink = await startSinkProcess();
  const door = await startDoor('milter', clamd);
  try {
    const pf = await startPostfix({
      sink: false,
      snippets: ['milter'],
      ports: { 10027: door.port },
      main: { relayhost: `[127.0.0.1]:${sink.port}`, default_process_limit: '40', smtpd_client_connection_count_limit: '0', smtpd_client_connection_rate_limit: '0', non_smtpd_milters: '', message_size_limit: String(50 * 1024 * 1024) },
    });
    try {
      const sent = (): number => pf.log().split('status=sent').length - 1;
      let note: string | undefined;
      if (clamd) {
        const c = await SmtpClient.open(pf.smtpPort);
        await c.cmd('EHLO bench.example.org');
        await c.begin();
        const r = (await c.send(message(0, EICAR))).reply;
        c.close();
        note = `EICAR: ${r}`;
        if (!r.startsWith('550')) throw new Error(`EICAR through Postfix+milter was not refused: ${r}`);
      }
      const t0 = Date.now();
      const src = await smtpSource(pf.smtpPort, 8, N_POSTFIX);
      const deadline = Date.now() + 90_000;
      while (sent() < N_POSTFIX && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const seconds = (Date.now() - t0) / 1000;
      const n = sent();
      rows.push({ target, load: '8 sessions, 1 msg/conn', messages: n, seconds, msgsPerSec: n / seconds, ok: src.ok && n >= N_POSTFIX, ...(note ? { note } : {}) });
      if (!src.ok) process.stderr.write(`${target}: smtp-source: ${src.out.slice(0, 400)}\n`);
    } finally {
      await pf.stop();
    }
  } finally {
    await stopChild(door.child);
    await stopChild(sink.child);
  }
}

async function milterReplayRate(clamd: string | undefined, rows: Rate[]): Promise<void> {
  const target = clamd ? 'milter-door+clamd' : 'milter-door';
  const door = await startDoor('milter', clamd);
  try {
    let note: string | undefined;
    if (clamd) {
      const r = await milterMessage(door.port, milterSteps(message(0, EICAR)));
      note = `EICAR: ${r}`;
      if (!r.includes('550')) throw new Error(`EICAR through the milter door was not refused: ${r}`);
    }
    const r = await milterReplay(door.port, 8, 4);
    rows.push({ target, load: '8 sessions, replayed packets', messages: r.messages, seconds: 4, msgsPerSec: r.perSecond, ok: r.bad.length === 0, ...(note ? { note } : {}) });
    if (r.bad.length > 0) process.stderr.write(`${target}: unexpected eom replies ${r.bad.join(', ')}\n`);
  } finally {
    await stopChild(door.child);
  }
}

/** Per target and load: the pass with the highest rate, noting every pass's rate. */
function bestOf(passes: readonly Rate[][]): Rate[] {
  const out: Rate[] = [];
  for (const r of passes[0] ?? []) {
    const all = passes.map((p) => p.find((x) => x.target === r.target && x.load === r.load)).filter((x): x is Rate => x !== undefined);
    const ok = all.filter((x) => x.ok);
    const best = (ok.length > 0 ? ok : all).reduce((a, b) => (b.msgsPerSec > a.msgsPerSec ? b : a));
    const runs = all.length > 1 ? `best of ${all.map((x) => x.msgsPerSec.toFixed(0)).join('/')}` : '';
    out.push({ ...best, ok: all.every((x) => x.ok), note: [runs, best.note].filter(Boolean).join('; ') });
  }
  return out;
}

interface Large {
  readonly rawMs: number;
  readonly doorClamdMs: number;
  readonly doorPlainMs: number;
  readonly ratio: number;
  readonly raw: number[];
  readonly doorClamd: number[];
  readonly doorPlain: number[];
  readonly doorRssGrowthMb: number;
  readonly doorPlainRssGrowthMb: number;
  readonly reply: string;
}

async function largeMessage(sinkPort: number, clamd: string): Promise<Large> {
  const doorTimes = async (withClamd: boolean, runs: number, between?: () => Promise<void>): Promise<{ ms: number[]; reply: string; growthMb: number }> => {
    const door = await startDoor('intercept', withClamd ? clamd : undefined, sinkPort);
    try {
      const pid = door.child.pid ?? 0;
      const c = await SmtpClient.open(door.port);
      await c.cmd('EHLO bench.example.org');
      const ms: number[] = [];
      let reply = '';
      const base = rssKb(pid);
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, rssKb(pid))), 10);
      for (let i = 0; i <= runs; i++) {
        await c.begin();
        const r = await c.send(message(MB10));
        reply = r.reply;
        if (!r.reply.startsWith('250')) throw new Error(`10 MB message: ${r.reply}`);
        if (i === 0) continue; // the first run warms up
        ms.push(r.ms);
        if (between) await between();
      }
      clearInterval(sampler);
      c.close();
      return { ms, reply, growthMb: (peak - base) / 1024 };
    } finally {
      await stopChild(door.child);
    }
  };
  await rawInstream(clamd, message(MB10)); // warm-up
  const raw: number[] = [];
  const withClamd = await doorTimes(true, LARGE_RUNS, async () => {
    raw.push(await rawInstream(clamd, message(MB10)));
  });
  const plain = await doorTimes(false, 3);
  const rawMs = median(raw);
  const doorClamdMs = median(withClamd.ms);
  return { rawMs, doorClamdMs, doorPlainMs: median(plain.ms), ratio: doorClamdMs / rawMs, raw, doorClamd: withClamd.ms, doorPlain: plain.ms, doorRssGrowthMb: withClamd.growthMb, doorPlainRssGrowthMb: plain.growthMb, reply: withClamd.reply };
}

// ------------------------------------------------------------------------------------------------ main

async function main(): Promise<void> {
  const started = Date.now();
  const loadBefore = loadavg();
  const missing = [SMTP_SINK, SMTP_SOURCE].filter((p) => !existsSync(p));
  if (missing.length > 0 || !clamdAvailable()) {
    const why = missing.length > 0 ? `${missing.join(', ')} not installed` : 'clamd not installed';
    process.stdout.write(`scan-doors bench skipped: ${why}\nBENCH_JSON ${JSON.stringify({ bench: 'scan-doors', skipped: why })}\n`);
    return;
  }
  const only = new Set(process.argv.slice(2));
  const want = (name: string): boolean => only.size === 0 || only.has(name);
  const passes: Rate[][] = [];
  const notes: string[] = [];
  let large: Large | undefined;
  const clamd = await startClamd({ streamMaxLength: '25M' });
  const sink = await startSinkProcess();
  try {
    // The 10 MB comparison first, while the machine is settled: the throughput passes leave load behind them
    // (clamd and Postfix clean-up, sockets in TIME_WAIT) that would land on whichever runs come next.
    if (want('large')) large = await largeMessage(sink.port, clamd.socketPath);
    for (let pass = 1; pass <= PASSES; pass++) {
      const rows: Rate[] = [];
      if (want('intercept') || want('milter')) {
        await rawRate(clamd.socketPath, 1, 2, rows);
        await rawRate(clamd.socketPath, 8, 2, rows);
      }
      if (want('intercept')) {
        await interceptRates(sink.port, undefined, rows);
        await interceptRates(sink.port, clamd.socketPath, rows);
      }
      if (want('milter')) {
        await milterReplayRate(undefined, rows);
        await milterReplayRate(clamd.socketPath, rows);
        if (postfixAvailable) {
          try {
            await milterPostfixRate(undefined, rows);
            await milterPostfixRate(clamd.socketPath, rows);
          } catch (err) {
            notes.push(`postfix scenario failed (pass ${pass}): ${(err as Error).message.split('\n')[0]}`);
          }
        } else if (pass === 1) notes.push('postfix scenario skipped: postfix (as root) not available');
      }
      passes.push(rows);
    }
  } finally {
    await stopChild(sink.child);
    await clamd.stop();
  }

  const rows = bestOf(passes);
  const rate = (t: string, l: string): number => rows.find((r) => r.target === t && r.load.startsWith(l))?.msgsPerSec ?? NaN;
  const ratios = {
    intercept1: rate('intercept+clamd', '1 session, 1 msg/conn') / rate('intercept', '1 session, 1 msg/conn'),
    intercept1NodeClient: rate('intercept+clamd', '1 session, Node client') / rate('intercept', '1 session, Node client'),
    intercept8: rate('intercept+clamd', '8 sessions') / rate('intercept', '8 sessions'),
    milterDoor8: rate('milter-door+clamd', '8 sessions') / rate('milter-door', '8 sessions'),
    postfixMilter8: rate('postfix+milter+clamd', '8 sessions') / rate('postfix+milter', '8 sessions'),
    interceptClamdVsClamdAlone8: rate('intercept+clamd', '8 sessions') / rate('clamd alone (zINSTREAM)', '8 in flight'),
    milterDoorClamdVsClamdAlone8: rate('milter-door+clamd', '8 sessions') / rate('clamd alone (zINSTREAM)', '8 in flight'),
  };
  const loadAfter = loadavg();
  const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const pad = (s: string, n: number): string => s.padEnd(n);
  let out = '\nscan-doors bench: doors without vs with clamd (private clamd, one-signature database), 100 KB messages\n\n';
  out += pad('target', 24) + pad('load', 32) + pad('msgs', 7) + pad('seconds', 9) + pad('msgs/s', 9) + 'note\n';
  for (const r of rows) out += pad(r.target, 24) + pad(r.load, 32) + pad(String(r.messages), 7) + pad(r.seconds.toFixed(2), 9) + pad(r.msgsPerSec.toFixed(1), 9) + (r.ok ? '' : 'FAILED ') + (r.note ?? '') + '\n';
  out += `\nwith/without clamd: intercept 1 session ${f(ratios.intercept1)} (Node client, many/conn: ${f(ratios.intercept1NodeClient)}), 8 sessions ${f(ratios.intercept8)}; milter door alone 8 sessions ${f(ratios.milterDoor8)}; Postfix+milter 8 sessions ${f(ratios.postfixMilter8)}\n`;
  out += `doors with clamd / clamd alone (8 in flight): intercept ${f(ratios.interceptClamdVsClamdAlone8)}, milter door ${f(ratios.milterDoorClamdVsClamdAlone8)}\n`;
  if (large) {
    out += `\n10 MB message, median of ${LARGE_RUNS}: intercept door with clamd ${f(large.doorClamdMs, 0)} ms, clamd zINSTREAM alone ${f(large.rawMs, 0)} ms, ratio ${f(large.ratio)}x (target <= 1.2x: ${large.ratio <= 1.2 ? 'met' : 'NOT met'})\n`;
    out += `   the door without clamd (relay only) ${f(large.doorPlainMs, 0)} ms: scanning adds ${f(large.doorClamdMs - large.doorPlainMs, 0)} ms to the relay; relaying adds ${f(large.doorClamdMs - large.rawMs, 0)} ms to clamd's own time\n`;
    out += `   runs (ms): door+clamd ${large.doorClamd.map((x) => x.toFixed(0)).join(' ')}; clamd alone ${large.raw.map((x) => x.toFixed(0)).join(' ')}; door alone ${large.doorPlain.map((x) => x.toFixed(0)).join(' ')}; door RSS growth with clamd ${f(large.doorRssGrowthMb, 1)} MB, without ${f(large.doorPlainRssGrowthMb, 1)} MB; reply "${large.reply}"\n`;
  }
  for (const n of notes) out += `note: ${n}\n`;
  out += `load average before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadAfter.map((x) => x.toFixed(2)).join(' ')}; total ${((Date.now() - started) / 1000).toFixed(0)} s\n`;
  process.stdout.write(out);
  const json = {
    bench: 'scan-doors',
    messageBytes: KB100,
    rows: rows.map((r) => ({ ...r, seconds: Number(r.seconds.toFixed(3)), msgsPerSec: Number(r.msgsPerSec.toFixed(1)) })),
    ratios: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, Number.isFinite(v) ? Number(v.toFixed(3)) : null])),
    ...(large
      ? { large10MB: { doorClamdMs: Number(large.doorClamdMs.toFixed(1)), clamdRawMs: Number(large.rawMs.toFixed(1)), ratio: Number(large.ratio.toFixed(3)), target: 1.2, doorPlainMs: Number(large.doorPlainMs.toFixed(1)), doorRssGrowthMb: Number(large.doorRssGrowthMb.toFixed(1)), doorPlainRssGrowthMb: Number(large.doorPlainRssGrowthMb.toFixed(1)) } }
      : {}),
    loadavg: { before: loadBefore.map((x) => Number(x.toFixed(2))), after: loadAfter.map((x) => Number(x.toFixed(2))) },
    notes,
  };
  process.stdout.write('BENCH_JSON ' + JSON.stringify(json) + '\n');
  if (rows.some((r) => !r.ok)) process.exitCode = 1;
}

const di = process.argv.indexOf('--door');
if (di >= 0) {
  runDoor(JSON.parse(process.argv[di + 1] ?? '{}') as DoorConfig).catch((err: unknown) => {
    process.stderr.write(`door failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`scan-doors bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
