/**
 * `sluice run` as a process (the built binary): the intercept door relaying to a real smtp-sink, rules from a
 * file, SIGHUP reload with a broken and then a good rule file, SIGTERM drain.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { requirePeer } from '../helpers/ci-guard.js';
import { cliMain } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { rawClient, type RawClient } from '../helpers/smtp-raw-client.js';
import { smtpSinkAvailable, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { makeTempDir } from '../helpers/temp-dir.js';

interface Running {
  readonly child: ChildProcess;
  output(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<number | null>;
}

function runSluice(cwd: string, args: string[]): Running {
  const child = spawn(process.execPath, [cliMain, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const watchers: Array<() => void> = [];
  const onData = (d: Buffer): void => {
    out += d.toString('utf8');
    for (const w of [...watchers]) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    waitFor: (re, timeoutMs = 8000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const lines = out.split('\n').filter((l) => re.test(l));
          if (lines.length === 0) return false;
          watchers.splice(watchers.indexOf(check2), 1);
          clearTimeout(timer);
          resolve(lines[lines.length - 1] as string);
          return true;
        };
        const check2 = (): void => void check();
        const timer = setTimeout(() => {
          watchers.splice(watchers.indexOf(check2), 1);
          reject(new Error(`no log line matching ${re} within ${timeoutMs} ms; output:\n${out}`));
        }, timeoutMs);
        watchers.push(check2);
        check();
      }),
  };
}

/** Counts the lines matching `re` so far, to wait for the next one. */
function count(r: Running, re: RegExp): number {
  return r.output().split('\n').filter((l) => re.test(l)).length;
}
async function waitForNth(r: Running, re: RegExp, n: number, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (count(r, re) < n) {
    if (Date.now() > deadline) throw new Error(`expected ${n} lines matching ${re}; output:\n${r.output()}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

async function mailFrom(port: number, sender: string): Promise<string> {
  const c: RawClient = await rawClient(port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    return (await c.cmd(`MAIL FROM:<${sender}>`)).trimEnd();
  } finally {
    c.close();
  }
}

describe('sluice run (built binary)', function () {
  this.timeout(40000);
  let tmp: { path: string; remove: () => void };
  let sink: SmtpSink | undefined;
  let proc: Running | undefined;

  before(function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
  });
  beforeEach(() => (tmp = makeTempDir()));
  afterEach(async () => {
    if (proc && proc.child.exitCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    proc = undefined;
    await sink?.stop();
    sink = undefined;
    tmp.remove();
  });

  it('serves, reloads on SIGHUP (refusing a broken rule file), and stops on SIGTERM with exit 0', async () => {
    sink = await startSmtpSink();
    const port = await freePort();
    const rules = join(tmp.path, 'main.rules');
    writeFileSync(rules, 'rule no_one at mail: sender ~ /@one\\.test$/ => reject 550 5.7.1 "one is blocked"\n');
    writeFileSync(
      join(tmp.path, 'sluice.yaml'),
      `hostname: gw.test
rules: main.rules
locks: { store: memory }
spf: { enabled: false }
drain_timeout: 5s
intercept:
  - listen: 127.0.0.1:${port}
    upstream: 127.0.0.1:${sink.port}
`,
    );
    proc = runSluice(tmp.path, ['run', '-c', 'sluice.yaml']);
    await proc.waitFor(/INFO  sluice started /);
    assert.match(proc.output(), new RegExp(`INFO  door listening door=intercept kind=intercept listen=127\\.0\\.0\\.1:${port} addresses=\\["127\\.0\\.0\\.1:${port}"\\]`));
    assert.match(proc.output(), /sluice started config=\S+sluice\.yaml doors=\["intercept:intercept"\] rules=1 rule_count=1/);

    assert.equal(await mailFrom(port, 'a@one.test'), '550 5.7.1 one is blocked');
    assert.match(await mailFrom(port, 'a@two.test'), /^250 /);

    // A broken rule file: refused with its position, the old rules keep serving.
    writeFileSync(rules, 'rule broken at mail: sender ~ => reject\n');
    proc.child.kill('SIGHUP');
    await proc.waitFor(/ERROR reload refused; the running configuration stays in force/);
    assert.match(proc.output(), /ERROR .* file=\S+main\.rules line=1 column=\d+ /);
    assert.equal(await mailFrom(port, 'a@one.test'), '550 5.7.1 one is blocked');

    // A good one: new sessions get it.
    writeFileSync(rules, 'rule no_two at mail: sender ~ /@two\\.test$/ => reject 550 5.7.1 "two is blocked"\n');
    proc.child.kill('SIGHUP');
    await proc.waitFor(/INFO  configuration reloaded .*kept=\["intercept:intercept"\]/);
    assert.match(await mailFrom(port, 'a@one.test'), /^250 /);
    assert.equal(await mailFrom(port, 'a@two.test'), '550 5.7.1 two is blocked');

    proc.child.kill('SIGUSR1');
    assert.match(await proc.waitFor(/INFO  status pid=/), new RegExp(`status pid=${proc.child.pid} uptime_s=\\d+ reloads=1 reloads_refused=1 last_reload=\\S+ rules=1 `));

    proc.child.kill('SIGTERM');
    assert.equal(await proc.exited, 0);
    assert.match(proc.output(), /INFO  stopping doors=\["intercept:intercept"\] active_sessions=\d drain_ms=5000/);
    assert.match(proc.output(), /INFO  sluice stopped\n$/);
  });

  it('SIGTERM lets a session in progress finish its message before exiting', async () => {
    sink = await startSmtpSink();
    const port = await freePort();
    writeFileSync(join(tmp.path, 'sluice.yaml'), `locks: { store: memory }\nspf: { enabled: false }\ndrain_timeout: 10s\nintercept:\n  - { listen: "127.0.0.1:${port}", upstream: "127.0.0.1:${sink.port}" }\n`);
    proc = runSluice(tmp.path, ['run', '-c', 'sluice.yaml']);
    await proc.waitFor(/sluice started/);
    const c = await rawClient(port);
    await c.reply();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<a@drain.test>'), /^250 /);
    proc.child.kill('SIGTERM');
    await proc.waitFor(/INFO  stopping .*active_sessions=1/);
    await assert.rejects(rawClient(port), /ECONNREFUSED/);
    assert.match(await c.cmd('RCPT TO:<b@drain.test>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    assert.match(await c.cmd('Subject: drained\r\n\r\nbody\r\n.'), /^250 /);
    await c.cmd('QUIT');
    c.close();
    assert.equal(await proc.exited, 0);
    const [msg] = await sink.waitForMessages(1);
    assert.equal(msg?.sender, 'a@drain.test');
  });

  it('a quarantine verdict in hold mode lands in quarantine.dir, where sluice quarantine finds it', async () => {
    sink = await startSmtpSink();
    const port = await freePort();
    writeFileSync(join(tmp.path, 'q.rules'), 'rule q at eom: header("Subject") ~ /quarantine me/ => quarantine "held for review"\n');
    writeFileSync(
      join(tmp.path, 'sluice.yaml'),
      `rules: q.rules\nlocks: { store: memory }\nspf: { enabled: false }\nquarantine: { dir: q }\nintercept:\n  - { listen: "127.0.0.1:${port}", upstream: "127.0.0.1:${sink.port}", hold_messages_up_to: 1MB }\n`,
    );
    proc = runSluice(tmp.path, ['run', '-c', 'sluice.yaml']);
    await proc.waitFor(/sluice started/);
    const c = await rawClient(port);
    await c.reply();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<a@q.test>'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<b@q.test>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    assert.match(await c.cmd('Subject: please quarantine me\r\n\r\nbody\r\n.'), /^250 /);
    await c.cmd('QUIT');
    c.close();
    proc.child.kill('SIGTERM');
    assert.equal(await proc.exited, 0);
    assert.equal(sink.messages().length, 0, 'the quarantined message must not reach the upstream');
    const list = spawnSync(process.execPath, [cliMain, 'quarantine', 'list', '-c', 'sluice.yaml'], { cwd: tmp.path, encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /a@q\.test/);
    assert.match(list.stdout, /held for review/);
  });

  it('exits 1 without starting when the configuration is bad or a port is taken', async () => {
    writeFileSync(join(tmp.path, 'bad.yaml'), 'intercept:\n  - listen: 127.0.0.1:1\n    mode: fixed\n');
    proc = runSluice(tmp.path, ['run', '-c', 'bad.yaml']);
    assert.equal(await proc.exited, 1);
    assert.equal(proc.output(), `${join(tmp.path, 'bad.yaml')}:2:5: error[config/missing-key]: missing key intercept[0].upstream\n  2 |   - listen: 127.0.0.1:1\n    |     ^^^^^^^^^^^^^^^^^^^\n  hint: mode fixed relays every connection to one upstream; write upstream: HOST:PORT\nsluice run: not started: 1 problem in the configuration or rules\n`);

    const port = await freePort();
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
    try {
      writeFileSync(join(tmp.path, 'busy.yaml'), `locks: { store: memory }\nspf: { enabled: false }\nintercept:\n  - { listen: "127.0.0.1:${port}", upstream: "127.0.0.1:25" }\n`);
      proc = runSluice(tmp.path, ['run', '-c', 'busy.yaml']);
      assert.equal(await proc.exited, 1);
      assert.match(proc.output(), new RegExp(`sluice run: not started: .*EADDRINUSE.*127\\.0\\.0\\.1:${port}`));
    } finally {
      blocker.close();
    }
  });
});
