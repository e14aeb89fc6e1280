/**
 * An intercept listener with `workers: 2`, through the real daemon (Daemon.start, the built-in doors) in front of a
 * real smtp-sink: sessions run in two worker processes, the session limits stay exact across them, a reload
 * reaches them, a worker that dies is replaced (its sessions released), and stop ends them all.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { Daemon } from '../../lib/daemon/daemon.js';
import { builtinDoors } from '../../lib/daemon/door-wiring.js';
import { DiagnosticsError } from '../../lib/core/errors.js';
import { loadConfig } from '../../lib/daemon/config-loader.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { until } from '../helpers/intercept-harness.js';
import { freePort } from '../helpers/ports.js';
import { rawClient, type RawClient } from '../helpers/smtp-raw-client.js';
import { smtpSinkAvailable, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { processAlive } from '../helpers/process-alive.js';

const BLOCK_RULE = 'rule blocked at mail: sender ~ /^blocked@/ => reject 550 5.7.1 "Blocked here"\n';

describe('intercept door with worker processes (workers: 2)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof makeTempDir>;
  let sink: SmtpSink | undefined;
  let daemon: Daemon | undefined;
  let port = 0;
  let logs: string[] = [];
  const clients: RawClient[] = [];

  before(function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix package)');
  });
  beforeEach(async () => {
    tmp = makeTempDir('sluice-workers-');
    sink = await startSmtpSink();
    port = await freePort();
    mkdirSync(join(tmp.path, 'rules'));
    writeFileSync(join(tmp.path, 'rules', 'base.rules'), 'rule trace at data: => add header "X-Worker-Trace" "{client.ip}"\n');
    writeFileSync(
      join(tmp.path, 'sluice.yaml'),
      `hostname: gw.test
state_dir: ${join(tmp.path, 'state')}
rules: [${join(tmp.path, 'rules')}]
log: { format: json, file: ${join(tmp.path, 'sluice.log')} }
limits: { sessions_per_client: 3 }
spf: { enabled: false }
drain_timeout: 2s
intercept:
  name: edge
  listen: 127.0.0.1:${port}
  upstream: 127.0.0.1:${sink.port}
  workers: 2
`,
    );
    logs = [];
    daemon = await Daemon.start({ configPath: join(tmp.path, 'sluice.yaml'), registry: builtinDoors(), logWrite: (l) => logs.push(l) });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await daemon?.stop(0);
    daemon = undefined;
    await sink?.stop();
    tmp.remove();
  });

  async function client(): Promise<RawClient> {
    const c = await rawClient(port);
    clients.push(c);
    return c;
  }
  /** The worker pids the daemon logged at start. */
  function workerPids(): number[] {
    const line = logs.find((l) => l.includes('intercept workers ready'));
    assert.ok(line, 'the daemon logged its workers');
    return JSON.parse(line).workers as number[];
  }
  /** Session records (NEW) the workers wrote to the log file, with their pid. */
  function sessionPids(): number[] {
    const text = readFileSync(join(tmp.path, 'sluice.log'), 'utf8');
    return text
      .split('\n')
      .filter((l) => l.includes('"event":"NEW"'))
      .map((l) => (JSON.parse(l) as { pid: number }).pid);
  }
  async function sendMessage(from = 'a@b.example'): Promise<string> {
    const c = await client();
    await c.reply();
    await c.cmd('EHLO client.test');
    const mail = await c.cmd(`MAIL FROM:<${from}>`);
    if (!mail.startsWith('250')) {
      await c.cmd('QUIT');
      return mail;
    }
    await c.cmd('RCPT TO:<r@d.example>');
    await c.cmd('DATA');
    const end = await c.cmd('Subject: w\r\n\r\nhello\r\n.');
    await c.cmd('QUIT');
    return end;
  }

  it('runs sessions in both workers; messages arrive with the trace header; the daemon itself runs none', async () => {
    const pids = workerPids();
    assert.equal(pids.length, 2);
    assert.ok(!pids.includes(process.pid));
    // Three at a time (sessions_per_client): the daemon hands each to the worker with the fewest sessions.
    const door = daemon!.runningDoors.get('intercept:edge')!;
    for (let round = 0; round < 3; round++) {
      const ends = await Promise.all([sendMessage(), sendMessage(), sendMessage()]);
      for (const e of ends) assert.match(e, /^250 /);
      await until(() => door.activeSessions === 0, 5000, 'the round\'s sessions to be counted out');
    }
    const got = await sink!.waitForMessages(9);
    for (const m of got) assert.equal(m.headers.find(([k]) => k.toLowerCase() === 'x-worker-trace')?.[1].trim(), '127.0.0.1');
    await until(() => sessionPids().length >= 9, 5000, 'the workers to log their sessions');
    const seen = new Set(sessionPids());
    assert.deepEqual([...seen].sort(), [...pids].sort(), 'both workers ran sessions, and only they');
  });

  it('keeps sessions_per_client exact across workers: the fourth connection gets 421', async () => {
    const open = [await client(), await client(), await client()];
    for (const c of open) assert.match(await c.reply(), /^220 /);
    const fourth = await client();
    assert.equal(await fourth.reply(), '421 4.7.0 gw.test Too many connections, try again later\r\n');
    open[0]!.write('QUIT\r\n');
    await open[0]!.closed;
    await until(() => (daemon!.runningDoors.get('intercept:edge')?.activeSessions ?? 0) === 2, 5000, 'the closed session to be counted out');
    const fifth = await client();
    assert.match(await fifth.reply(), /^220 /);
  });

  it('a reload reaches the workers: new sessions get the new rules', async () => {
    assert.match(await sendMessage('blocked@x.example'), /^250 /);
    writeFileSync(join(tmp.path, 'rules', 'block.rules'), BLOCK_RULE);
    const r = await daemon!.reload();
    assert.equal(r.ok, true);
    // Both workers reload on the daemon's word; every new session, on either worker, sees the rule.
    await until(() => readFileSync(join(tmp.path, 'sluice.log'), 'utf8').split('worker reloaded').length - 1 >= 2, 10_000, 'both workers to reload');
    for (let i = 0; i < 4; i++) assert.equal(await sendMessage('blocked@x.example'), '550 5.7.1 Blocked here\r\n');
    assert.match(await sendMessage(), /^250 /);
  });

  it('a worker that dies is replaced, and its sessions no longer count', async () => {
    const [first] = workerPids();
    const held = [await client(), await client()];
    for (const c of held) assert.match(await c.reply(), /^220 /);
    assert.equal(daemon!.runningDoors.get('intercept:edge')?.activeSessions, 2);
    process.kill(first!, 'SIGKILL');
    await until(() => logs.some((l) => l.includes('worker exited; starting a new one')), 5000, 'the daemon to see the worker die');
    await until(() => logs.filter((l) => l.includes('"msg":"worker started"')).length >= 3, 5000, 'a new worker');
    // The session the dead worker ran is gone (its client sees the connection close); the other one stays.
    const door = daemon!.runningDoors.get('intercept:edge')!;
    await until(() => door.activeSessions === 1, 5000, 'the dead worker\'s session to be released');
    await new Promise((r) => setTimeout(r, 1500));
    for (let i = 0; i < 3; i++) assert.match(await sendMessage(), /^250 /);
  });

  it('stop ends every worker process', async () => {
    const pids = workerPids();
    await daemon!.stop(0);
    daemon = undefined;
    for (const pid of pids) {
      await until(() => !processAlive(pid), 5000, `worker ${pid} to exit`);
    }
  });

  it('a worker that cannot start says why and exits: the pool refuses to start, at once', async () => {
    const { WorkerPool } = await import('../../lib/intercept/worker-pool.js');
    const entry = fileURLToPath(new URL('../../lib/daemon/intercept-worker-main.js', import.meta.url));
    const pool = new WorkerPool({ workers: 1, entry, args: [join(tmp.path, 'sluice.yaml'), tmp.path, 'nosuch'], logger: NULL_LOGGER });
    const t0 = Date.now();
    await assert.rejects(pool.start(), /intercept worker 0 could not start: no intercept listener named "nosuch"/);
    assert.ok(Date.now() - t0 < 8000, `took ${Date.now() - t0} ms`);
    const [pid] = pool.pids;
    await until(() => !processAlive(pid!), 5000, 'the failed worker to exit');
  });

  it('refuses workers with a lock store the processes cannot share', async () => {
    const file = join(tmp.path, 'memory.yaml');
    writeFileSync(file, `locks: { store: memory }\nintercept: { listen: 127.0.0.1:${port}, upstream: 127.0.0.1:25, workers: 4 }\n`);
    await assert.rejects(loadConfig(file), (err: unknown) => err instanceof DiagnosticsError && /workers: 4 needs a lock store the processes share/.test(err.message));
    writeFileSync(file, `intercept: { listen: 127.0.0.1:${port}, upstream: 127.0.0.1:25, workers: 0 }\n`);
    await assert.rejects(loadConfig(file), (err: unknown) => err instanceof DiagnosticsError && /workers/.test(err.message));
  });
});

describe('intercept door with worker processes, PROXY protocol mode', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof makeTempDir>;
  let sink: SmtpSink | undefined;
  let daemon: Daemon | undefined;
  let port = 0;

  before(function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix package)');
  });
  beforeEach(async () => {
    tmp = makeTempDir('sluice-workers-proxy-');
    sink = await startSmtpSink();
    port = await freePort();
    writeFileSync(join(tmp.path, 'trace.rules'), 'rule trace at data: => add header "X-Worker-Trace" "{client.ip}:{client.port}"\n');
    writeFileSync(
      join(tmp.path, 'sluice.yaml'),
      `hostname: gw.test
state_dir: ${join(tmp.path, 'state')}
rules: [${join(tmp.path, 'trace.rules')}]
log: { level: error }
spf: { enabled: false }
intercept:
  name: pp
  listen: 127.0.0.1:${port}
  mode: proxy
  proxy_trusted: [127.0.0.1]
  upstream: 127.0.0.1:${sink.port}
  workers: 2
`,
    );
    daemon = await Daemon.start({ configPath: join(tmp.path, 'sluice.yaml'), registry: builtinDoors(), logWrite: () => undefined });
  });
  afterEach(async () => {
    await daemon?.stop(0);
    daemon = undefined;
    await sink?.stop();
    tmp.remove();
  });

  it('bytes the daemon read with the PROXY header (a whole pipelined session) reach the worker intact', async () => {
    const c = await rawClient(port);
    try {
      // One write: the header, then the whole session without waiting for any reply. The daemon reads it all
      // while parsing the header; the worker must get every byte after the header.
      c.write(
        'PROXY TCP4 192.0.2.7 192.0.2.25 40001 25\r\n' +
          'EHLO client.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r@d.example>\r\nDATA\r\nSubject: p\r\n\r\nhello\r\n.\r\nQUIT\r\n',
      );
      const closed = await Promise.race([c.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
      assert.ok(closed, `the session did not end; the client got ${JSON.stringify(c.received())}`);
      const lines = c.received().split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3));
      assert.deepEqual(lines, ['220', '250', '250', '250', '354', '250', '221'], c.received());
      const [m] = await sink!.waitForMessages(1);
      assert.equal(m!.headers.find(([k]) => k.toLowerCase() === 'x-worker-trace')?.[1].trim(), '192.0.2.7:40001');
    } finally {
      c.close();
    }
  });
});
