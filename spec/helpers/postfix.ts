/**
 * A private Postfix instance for integration tests, from the Debian package.
 *
 * Everything lives in one temp dir: etc/ (config_directory), spool/ (queue_directory), data/ (data_directory),
 * log/maillog (maillog_file, written by postlogd: no syslog needed), sink/ (smtp-sink dumps). The public smtpd
 * listens on a free 127.0.0.1 port; everything relays to an smtp-sink the harness starts. Several instances can run
 * at once (unique dirs, ports, multi_instance_name, syslog_name).
 *
 * The door-specific parts come FROM the example snippets in conf/postfix/ (`snippets: ['filter']` reads
 * conf/postfix/filter.main.cf and filter.master.cf), with the example ports replaced by test ports through `ports`
 * (e.g. {10025: filterDoorPort, 10026: reinjectPort}), so the examples are exactly what the tests run.
 * A master.cf snippet line for the service `smtp inet` replaces the public smtpd (before-queue proxy setups).
 */
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './paths.js';
import { freePort } from './ports.js';
import { startSmtpSink, smtpSinkAvailable, type SmtpSink, type SmtpSinkOptions } from './smtp-sink.js';
import { makeTempDir } from './temp-dir.js';
import { processAlive } from './process-alive.js';

export const POSTFIX = '/usr/sbin/postfix';
export const POSTQUEUE = '/usr/sbin/postqueue';
export const POSTSUPER = '/usr/sbin/postsuper';
export const POSTCONF = '/usr/sbin/postconf';
export const postfixConfDir = join(repoRoot, 'conf', 'postfix');

/** Postfix needs root to start its master; the package must be installed. */
export const postfixAvailable: boolean =
  existsSync(POSTFIX) && existsSync('/usr/lib/postfix/sbin/master') && process.getuid?.() === 0 && smtpSinkAvailable;

export interface PostfixOptions {
  /** Example snippets from conf/postfix/ to apply, by prefix: 'policy', 'filter', 'proxy', 'milter'. */
  readonly snippets?: readonly string[];
  /**
   * Example port → test port, applied to snippet text wherever `127.0.0.1:PORT` or `[127.0.0.1]:PORT` occurs
   * (see EXAMPLE_PORTS).
   */
  readonly ports?: Readonly<Record<number, number>>;
  /** main.cf parameters set last (override base and snippets). */
  readonly main?: Readonly<Record<string, string>>;
  /** Extra master.cf entries (whole lines, continuation lines start with whitespace). */
  readonly master?: readonly string[];
  /** smtp-sink options; `false` = no sink (then set relayhost yourself via `main`). */
  readonly sink?: SmtpSinkOptions | false;
  /** Port for the public smtpd (default: a free one). */
  readonly smtpPort?: number;
}

export interface QueueEntry {
  readonly queue_name: string;
  readonly queue_id: string;
  readonly arrival_time: number;
  readonly message_size: number;
  readonly sender: string;
  readonly recipients: ReadonlyArray<{ readonly address: string; readonly delay_reason?: string }>;
  readonly forced_expire?: boolean;
}

export interface PostfixInstance {
  readonly name: string;
  readonly dir: string;
  readonly configDir: string;
  readonly queueDir: string;
  readonly host: string;
  /** The public smtpd's port. */
  readonly smtpPort: number;
  readonly sink?: SmtpSink;
  readonly logFile: string;
  /** Postfix's maillog so far. */
  log(): string;
  /** Waits until the maillog matches; returns the match. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** `postqueue -j`: every message in any queue. */
  queue(): Promise<QueueEntry[]>;
  /** Messages in the hold queue. */
  holdQueue(): Promise<QueueEntry[]>;
  /** Polls until the queue is empty; rejects (with the queue listing) after timeoutMs. */
  waitForQueueEmpty(timeoutMs?: number): Promise<void>;
  /** Polls until `pred(queue)` holds; returns the queue. */
  waitForQueue(pred: (q: QueueEntry[]) => boolean, timeoutMs?: number): Promise<QueueEntry[]>;
  /** `postqueue -f`: retry deferred mail now. */
  flush(): Promise<void>;
  /** `postconf -c DIR -h NAME`. */
  postconf(name: string): Promise<string>;
  stop(): Promise<void>;
}

let instanceCounter = 0;

function run(cmd: string, args: readonly string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/**
 * The example ports of conf/postfix (the same as conf/sluice.yaml): milter 10027, filter 10028, policyd 10029,
 * re-injection smtpd 10026. Earlier examples used 10030 (milter), 10025 (filter) and 10040 (policyd); `ports` keyed
 * by those still works.
 */
export const EXAMPLE_PORTS = { milter: 10027, filter: 10028, policyd: 10029, reinject: 10026 } as const;
const LEGACY_PORTS: Readonly<Record<number, number>> = { 10030: 10027, 10025: 10028, 10040: 10029 };

function normalisePorts(ports: Readonly<Record<number, number>>): Record<number, number> {
  const out: Record<number, number> = { ...ports };
  for (const [legacy, current] of Object.entries(LEGACY_PORTS)) {
    const v = ports[Number(legacy)];
    if (v !== undefined && ports[current] === undefined) out[current] = v;
  }
  return out;
}

/** Replaces example ports (127.0.0.1:10025, [127.0.0.1]:10025) with test ports. */
export function applyPorts(text: string, ports: Readonly<Record<number, number>>): string {
  return text.replace(/(127\.0\.0\.1\]?:)(\d{2,5})\b/g, (all, prefix: string, port: string) => {
    const to = ports[Number(port)];
    return to === undefined ? all : `${prefix}${to}`;
  });
}

/** Splits a master.cf text into entries (an entry = its first line plus continuation lines); drops comments. */
export function masterEntries(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) || line.trim() === '') continue;
    if (/^\s/.test(line) && out.length > 0) out[out.length - 1] += '\n' + line;
    else out.push(line);
  }
  return out;
}

function readSnippet(name: string, kind: 'main' | 'master'): string | undefined {
  const file = join(postfixConfDir, `${name}.${kind}.cf`);
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

const BASE_MASTER = [
  'pickup     unix  n       -       n       60      1       pickup',
  'cleanup    unix  n       -       n       -       0       cleanup',
  'qmgr       unix  n       -       n       300     1       qmgr',
  'rewrite    unix  -       -       n       -       -       trivial-rewrite',
  'bounce     unix  -       -       n       -       0       bounce',
  'defer      unix  -       -       n       -       0       bounce',
  'trace      unix  -       -       n       -       0       bounce',
  'verify     unix  -       -       n       -       1       verify',
  'flush      unix  n       -       n       1000?   0       flush',
  'proxymap   unix  -       -       n       -       -       proxymap',
  'proxywrite unix  -       -       n       -       1       proxymap',
  'smtp       unix  -       -       n       -       -       smtp',
  'relay      unix  -       -       n       -       -       smtp',
  'showq      unix  n       -       n       -       -       showq',
  'error      unix  -       -       n       -       -       error',
  'retry      unix  -       -       n       -       -       error',
  'discard    unix  -       -       n       -       -       discard',
  'anvil      unix  -       -       n       -       1       anvil',
  'scache     unix  -       -       n       -       1       scache',
  'postlog    unix-dgram n  -       n       -       1       postlogd',
];

/**
 * main.cf text with each parameter set once, by its last entry. Every Postfix process warns about each overridden
 * entry in its log, and the master does so before postlogd runs: the datagrams queue up on the postlog socket,
 * whose queue holds only net.unix.max_dgram_qlen (10 here) of them, and a master that blocks there never starts.
 */
function lastEntryWins(text: string): string {
  const entries: string[][] = [];
  for (const line of text.split('\n')) {
    if (/^[ \t]/.test(line) && entries.length > 0 && !/^\s*(#|$)/.test(line)) entries[entries.length - 1]!.push(line);
    else entries.push([line]);
  }
  const key = (e: string[]): string | undefined => /^([A-Za-z0-9_]+)\s*=/.exec(e[0] ?? '')?.[1];
  const last = new Map<string, number>();
  entries.forEach((e, i) => {
    const k = key(e);
    if (k !== undefined) last.set(k, i);
  });
  return entries
    .filter((e, i) => {
      const k = key(e);
      return k === undefined || last.get(k) === i;
    })
    .map((e) => e.join('\n'))
    .join('\n');
}

/** Resolves when a server on host:port answers with a 220 greeting (then says QUIT); rejects after timeoutMs. */
async function smtpGreeting(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      let buf = '';
      const done = (v: boolean): void => {
        clearTimeout(t);
        s.destroy();
        resolve(v);
      };
      const t = setTimeout(() => done(false), Math.max(100, deadline - Date.now()));
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (/^220[ -]/m.test(buf)) {
          s.end('QUIT\r\n');
          done(true);
        }
      });
      s.on('error', () => done(false));
      s.on('close', () => done(false));
    });
    if (ok) return;
    if (Date.now() >= deadline) throw new Error(`no SMTP greeting on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts a private Postfix. Under heavy load a master occasionally never logs "daemon started" (it blocks writing
 * to its log service); such an instance is killed and the start is tried once more.
 */
export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  try {
    return await startPostfixOnce(options);
  } catch (err) {
    if (!/daemon started|SMTP greeting/.test(String((err as Error).message))) throw err;
    return await startPostfixOnce(options);
  }
}

async function startPostfixOnce(options: PostfixOptions): Promise<PostfixInstance> {
  const n = `${process.pid}-${++instanceCounter}`;
  const name = `postfix-sluice-${n}`;
  const temp = makeTempDir('sluice-postfix-');
  const dir = temp.path;
  // Postfix daemons run as `postfix` and must reach the queue below this dir.
  chmodSync(dir, 0o755);
  const configDir = join(dir, 'etc');
  const queueDir = join(dir, 'spool');
  const dataDir = join(dir, 'data');
  const logDir = join(dir, 'log');
  const logFile = join(logDir, 'maillog');
  for (const d of [configDir, queueDir, dataDir, logDir]) mkdirSync(d, { mode: 0o755 });
  const pw = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postfix:'));
  const [uid, gid] = pw ? [Number(pw.split(':')[2]), Number(pw.split(':')[3])] : [NaN, NaN];
  if (Number.isFinite(uid)) chownSync(dataDir, uid, gid);

  let sink: SmtpSink | undefined;
  let started = false;
  const cleanupOnFailure = async (): Promise<void> => {
    if (started) await stopMaster(configDir, queueDir);
    await sink?.stop();
    temp.remove();
  };

  try {
    if (options.sink !== false) sink = await startSmtpSink({ ...(options.sink ?? {}), dir: join(dir, 'sink') });
    const smtpPort = options.smtpPort ?? (await freePort());
    const ports = normalisePorts(options.ports ?? {});

    const main: string[] = [
      '# generated by spec/helpers/postfix.ts',
      'compatibility_level = 3.6',
      `queue_directory = ${queueDir}`,
      `data_directory = ${dataDir}`,
      'command_directory = /usr/sbin',
      'daemon_directory = /usr/lib/postfix/sbin',
      'shlib_directory = /usr/lib/postfix',
      'meta_directory = /etc/postfix',
      'mail_owner = postfix',
      'setgid_group = postdrop',
      `multi_instance_name = ${name}`,
      `syslog_name = ${name}`,
      `maillog_file = ${logFile}`,
      `maillog_file_prefixes = ${dir}`,
      `myhostname = mx${instanceCounter}.sluice.test`,
      'mydomain = sluice.test',
      'myorigin = $myhostname',
      'mydestination =',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      `relayhost = ${sink ? sink.relayhost : ''}`,
      'alias_maps =',
      'alias_database =',
      'local_recipient_maps =',
      'biff = no',
      'append_dot_mydomain = no',
      'smtpd_banner = $myhostname ESMTP',
      'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
      'smtpd_tls_security_level = none',
      'smtp_tls_security_level = none',
      'smtp_connect_timeout = 5s',
      'smtp_helo_timeout = 20s',
      'smtp_data_done_timeout = 60s',
      'delay_warning_time = 0',
      'in_flow_delay = 0',
      'queue_run_delay = 300s',
      'minimal_backoff_time = 300s',
      'maximal_backoff_time = 600s',
      'smtp_address_preference = ipv4',
      'default_process_limit = 20',
    ];
    const master: string[] = [`127.0.0.1:${smtpPort} inet n - n - - smtpd`, ...BASE_MASTER];
    for (const snip of options.snippets ?? []) {
      const m = readSnippet(snip, 'main');
      const ms = readSnippet(snip, 'master');
      if (m === undefined && ms === undefined) throw new Error(`no conf/postfix/${snip}.main.cf or ${snip}.master.cf`);
      if (m !== undefined) main.push(`# from conf/postfix/${snip}.main.cf`, applyPorts(m, ports));
      if (ms !== undefined) {
        for (const entry of masterEntries(applyPorts(ms, ports))) {
          if (/^smtp\s+inet\s/.test(entry)) master[0] = entry.replace(/^smtp(\s)/, `127.0.0.1:${smtpPort}$1`);
          else master.push(entry);
        }
      }
    }
    for (const [k, v] of Object.entries(options.main ?? {})) main.push(`${k} = ${v}`);
    master.push(...(options.master ?? []));
    writeFileSync(join(configDir, 'main.cf'), lastEntryWins(main.join('\n')) + '\n');
    writeFileSync(join(configDir, 'master.cf'), master.join('\n') + '\n');

    const check = await run(POSTFIX, ['-c', configDir, 'check']);
    if (check.code !== 0) throw new Error(`postfix check failed (${check.code}): ${check.stderr}${check.stdout}`);
    const start = await run(POSTFIX, ['-c', configDir, 'start']);
    if (start.code !== 0) throw new Error(`postfix start failed (${start.code}): ${start.stderr}${start.stdout}`);
    started = true;

    const inst = makeInstance({ name, dir, configDir, queueDir, smtpPort, sink, logFile, remove: temp.remove });
    // The master binds the public port before it daemonizes, but its children come up on first use: wait for the
    // greeting so callers can connect right away. Its "daemon started" log line counts as well; now and then the
    // master's own line never reaches the log (it writes to postlogd before postlogd listens), while smtpd greets.
    await Promise.any([inst.waitForLog(/daemon started/, 10_000), smtpGreeting('127.0.0.1', smtpPort, 10_000)]).catch(() => {
      throw new Error(`postfix ${name}: neither "daemon started" in its log nor an SMTP greeting on port ${smtpPort} within 10 s`);
    });
    return inst;
  } catch (err) {
    await cleanupOnFailure();
    throw err;
  }
}

/** `postfix stop`, then, if the master is still there after 5 s (or never answered), SIGKILL it and its children. */
async function stopMaster(configDir: string, queueDir: string): Promise<void> {
  const pid = readPid(join(queueDir, 'pid', 'master.pid'));
  await run(POSTFIX, ['-c', configDir, 'stop']);
  if (pid === undefined) return;
  const deadline = Date.now() + 5000;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!processAlive(pid)) return;
  for (const c of childrenOf(pid)) {
    try {
      process.kill(c, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}


/** Direct children of `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

function makeInstance(p: {
  name: string;
  dir: string;
  configDir: string;
  queueDir: string;
  smtpPort: number;
  sink: SmtpSink | undefined;
  logFile: string;
  remove: () => void;
}): PostfixInstance {
  const log = (): string => (existsSync(p.logFile) ? readFileSync(p.logFile, 'utf8') : '');
  const queue = async (): Promise<QueueEntry[]> => {
    const r = await run(POSTQUEUE, ['-c', p.configDir, '-j']);
    if (r.code !== 0) throw new Error(`postqueue -j failed: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as QueueEntry);
  };
  const waitForQueue = async (pred: (q: QueueEntry[]) => boolean, timeoutMs = 15_000): Promise<QueueEntry[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const q = await queue();
      if (pred(q)) return q;
      if (Date.now() > deadline) throw new Error(`postfix queue condition not met after ${timeoutMs} ms: ${JSON.stringify(q)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let stopped = false;
  return {
    name: p.name,
    dir: p.dir,
    configDir: p.configDir,
    queueDir: p.queueDir,
    host: '127.0.0.1',
    smtpPort: p.smtpPort,
    ...(p.sink ? { sink: p.sink } : {}),
    logFile: p.logFile,
    log,
    async waitForLog(re, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = log().match(re);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`postfix log did not match ${re} after ${timeoutMs} ms; log:\n${log().slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    queue,
    async holdQueue() {
      return (await queue()).filter((e) => e.queue_name === 'hold');
    },
    async waitForQueueEmpty(timeoutMs = 15_000) {
      await waitForQueue((q) => q.length === 0, timeoutMs);
    },
    waitForQueue,
    async flush() {
      await run(POSTQUEUE, ['-c', p.configDir, '-f']);
    },
    async postconf(name: string) {
      return (await run(POSTCONF, ['-c', p.configDir, '-h', name])).stdout.trim();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopMaster(p.configDir, p.queueDir);
      await p.sink?.stop();
      p.remove();
    },
  };
}
