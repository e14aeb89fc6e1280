/**
 * Scanner verdict headers (PolicyEngine `verdictHeaders`) on delivered mail, with real clamd and spamd:
 *  - milter door behind a real Postfix (swaks → Postfix → milter door → smtp-sink): eom `add` mutations;
 *  - filter door (Postfix content_filter → filter door → Postfix reinjection → smtp-sink);
 *  - intercept door in hold mode (raw client → door → smtp-sink): headers in the dumped message, fallback to
 *    streaming above the limit, a refusal never sends the dot, quarantine with `sluice quarantine` list/release.
 * The rules tag rather than reject spam, so GTUBE is delivered with `X-Spam-Status: Yes, ...`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import type { Door } from '../../lib/daemon/door.js';
import { QuarantineStore } from '../../lib/daemon/quarantine-store.js';
import { createFilterDoor } from '../../lib/milter/filter-door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { compileRules, PolicyEngine } from '../../lib/policy/index.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { startHoldDoor, type HoldDoor } from '../helpers/hold-door.js';
import { testDeps } from '../helpers/milter-client.js';
import { cliMain } from '../helpers/paths.js';
import { doorDeps, lockStoreIn } from '../helpers/postfix-door-deps.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { EICAR, GTUBE } from '../helpers/scan-samples.js';
import { sendOneMessage } from '../helpers/relay-fixture.js';
import { smtpSinkAvailable, startSmtpSink, type SinkMessage, type SmtpSink } from '../helpers/smtp-sink.js';
import { spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RULES = `
rule trace at data: => add header "X-NAT-Received" "from [{client.ip}] by {proxy.name}"
rule scanner-failed at eom: scanner failed => tempfail 451 4.3.0 "Scanner failed, try again later"
rule virus at eom: virus => reject 554 5.7.1 "Malware found ({virus.name})"
rule held at eom: header("Subject") ~ /quarantine me/ => quarantine "review"
`;

const header = (m: SinkMessage | undefined, name: string): string | undefined => m?.headers.find(([n]) => n === name)?.[1];
const SPAM_YES = /^Yes, score=1000\.\d required=5\.0 tests=(\S+,)?GTUBE(,\S+)?$/;
const SPAM_NO = /^No, score=-?\d+\.\d required=5\.0 tests=\S+$/;

function engine(locks: LockStore): PolicyEngine {
  return new PolicyEngine(compileRules([{ file: 'verdict.rules', text: RULES }]), { locks, clock: SYSTEM_CLOCK }, { proxyName: 'sluice.test', verdictHeaders: true });
}

/** swaks through the private Postfix: HELO client.example, sender@example.org → `to`, with `body`. */
function sendVia(pf: PostfixInstance, to: string, body: string): ReturnType<typeof swaks> {
  return swaks({ server: pf.host, port: pf.smtpPort, helo: 'client.example', from: 'sender@example.org', to, body });
}

/** The message Postfix's sink got for `rcpt`, waiting up to 20 s; undefined if none came. */
async function deliveredVia(pf: PostfixInstance, rcpt: string): Promise<SinkMessage | undefined> {
  const end = Date.now() + 20_000;
  for (;;) {
    const m = pf.sink!.messages().find((x) => x.recipients.includes(rcpt));
    if (m || Date.now() > end) return m;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('scanner verdict headers on delivered mail (clamd, spamd)', function () {
  this.timeout(120_000);
  const temp = makeTempDir('sluice-verdict-');
  let clamd: RunningClamd | undefined;
  let spamd: RunningSpamd | undefined;
  let scanners: ConfiguredScannerSet | undefined;

  before(async function () {
    requirePeer(this, clamdAvailable() && spamdAvailable(), 'clamd and spamd');
    [clamd, spamd] = await Promise.all([startClamd(), startSpamd()]);
    scanners = createScannerSet(
      {
        clamd: { address: clamd.socketPath, timeout: 10_000, maxSize: 10 * 1024 * 1024 },
        spamd: { address: spamd.address, timeout: 20_000, maxSize: 512 * 1024 },
        tempDir: join(temp.path, 'spool'),
      },
      NULL_LOGGER,
    );
  });

  after(async () => {
    await scanners?.close();
    await clamd?.stop();
    await spamd?.stop();
    temp.remove();
  });

  describe('milter door behind Postfix', () => {
    let door: Door | undefined;
    let locks: LockStore | undefined;
    let pf: PostfixInstance | undefined;

    before(async function () {
      requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
      locks = lockStoreIn(join(temp.path));
      const port = await freePort();
      door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(engine(locks), { scanners: scanners!, locks }));
      await door.start();
      pf = await startPostfix({ snippets: ['milter'], ports: { 10030: port } });
    });

    after(async () => {
      await pf?.stop();
      await door?.stop(500);
      await locks?.close();
    });

    const send = (to: string, body: string) => sendVia(pf!, to, body);
    const deliveredTo = (rcpt: string): Promise<SinkMessage | undefined> => deliveredVia(pf!, rcpt);

    it('clean mail is delivered with X-Virus-Status: Clean and X-Spam-Status: No', async () => {
      const r = await send('clean@example.net', 'Hello, nothing to see here.');
      assert.equal(r.code, 0, r.transcript);
      const m = await deliveredTo('clean@example.net');
      assert.equal(header(m, 'X-Virus-Status'), 'Clean');
      assert.match(header(m, 'X-Spam-Status') ?? '', SPAM_NO);
      assert.match(header(m, 'X-Spam-Score') ?? '', /^-?\d+\.\d$/);
    });

    it('GTUBE (tagged, not rejected) is delivered with X-Spam-Status: Yes and the score', async () => {
      const r = await send('spam@example.net', `${GTUBE}\n`);
      assert.equal(r.code, 0, r.transcript);
      const m = await deliveredTo('spam@example.net');
      assert.match(header(m, 'X-Spam-Status') ?? '', SPAM_YES);
      assert.match(header(m, 'X-Spam-Score') ?? '', /^1000\.\d$/);
      assert.equal(header(m, 'X-Virus-Status'), 'Clean');
    });
  });

  describe('filter door (Postfix content_filter)', () => {
    let door: Door | undefined;
    let locks: LockStore | undefined;
    let pf: PostfixInstance | undefined;

    before(async function () {
      requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
      const dir = { path: join(temp.path, 'filter') };
      mkdirSync(dir.path);
      locks = lockStoreIn(dir.path);
      const doorPort = await freePort();
      const reinject = await freePort();
      door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port: doorPort }, nextHop: { host: '127.0.0.1', port: reinject }, spoolDir: dir.path }, doorDeps({ policy: engine(locks), locks, scanners: scanners! }));
      await door.start();
      pf = await startPostfix({ snippets: ['filter'], ports: { 10025: doorPort, 10026: reinject } });
    });

    after(async () => {
      await pf?.stop();
      await door?.stop(500);
      await locks?.close();
    });

    const deliveredTo = (rcpt: string): Promise<SinkMessage | undefined> => deliveredVia(pf!, rcpt);

    it('clean mail and GTUBE are delivered with their verdict headers', async () => {
      const send = (to: string, body: string) => sendVia(pf!, to, body);
      assert.equal((await send('clean@example.net', 'Nothing to see.')).code, 0);
      assert.equal((await send('spam@example.net', `${GTUBE}\n`)).code, 0);
      const clean = await deliveredTo('clean@example.net');
      assert.equal(header(clean, 'X-Virus-Status'), 'Clean', pf!.log().slice(-2000));
      assert.match(header(clean, 'X-Spam-Status') ?? '', SPAM_NO);
      const spam = await deliveredTo('spam@example.net');
      assert.match(header(spam, 'X-Spam-Status') ?? '', SPAM_YES);
    });
  });

  describe('intercept door in hold mode (smtp-sink upstream)', () => {
    let sink: SmtpSink | undefined;
    let h: HoldDoor | undefined;
    let qdir = '';

    before(async function () {
      requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
      sink = await startSmtpSink();
      h = await startHoldDoor({
        upstreamPort: sink.port,
        rules: RULES,
        verdictHeaders: true,
        scanners: scanners!,
        options: { holdMessagesUpTo: 64 * 1024 },
        quarantine: (dir) => new QuarantineStore((qdir = join(dir, 'quarantine'))),
      });
    });

    after(async () => {
      await h?.stop();
      await sink?.stop();
    });

    function send(rcpt: string, subject: string, body: string): Promise<string> {
      return sendOneMessage(h!.port, rcpt, `Subject: ${subject}\r\nFrom: a@example.org\r\n\r\n${body}`);
    }
    const atSink = (rcpt: string) => sink!.messages().filter((m) => m.recipients.includes(rcpt));

    it('clean and GTUBE mail reach the sink with the trace header first and the verdict headers after the others', async () => {
      assert.match(await send('clean@example.net', 'hello', 'Nothing to see here.'), /^250 /);
      assert.match(await send('spam@example.net', 'buy', GTUBE), /^250 /);
      await sink!.waitForMessages(2);
      const [clean] = atSink('clean@example.net');
      assert.deepEqual(clean?.headers.map(([n]) => n).filter((n) => n !== 'Received'), ['X-NAT-Received', 'Subject', 'From', 'X-Virus-Status', 'X-Spam-Status', 'X-Spam-Score']);
      assert.equal(header(clean, 'X-Virus-Status'), 'Clean');
      assert.match(header(clean, 'X-Spam-Status') ?? '', SPAM_NO);
      const [spam] = atSink('spam@example.net');
      assert.match(header(spam, 'X-Spam-Status') ?? '', SPAM_YES);
      assert.match(spam?.body ?? '', /GTUBE/);
    });

    it('above the hold limit the message streams: delivered intact with the trace header, no verdict headers', async () => {
      const body = 'a line of a message larger than the hold limit\r\n'.repeat(2000).trimEnd();
      assert.match(await send('big@example.net', 'big', body), /^250 /);
      const end = Date.now() + 10_000;
      while (atSink('big@example.net').length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const [m] = atSink('big@example.net');
      assert.equal(header(m, 'X-NAT-Received'), 'from [127.0.0.1] by sluice.test');
      assert.equal(header(m, 'X-Virus-Status'), undefined);
      assert.equal(m?.body.split('\n').filter((l) => l.startsWith('a line')).length, 2000);
      assert.equal(h!.events('HOLD').at(-1)?.['why'], 'size');
    });

    it('EICAR is refused at the end of data and the sink never gets the message', async () => {
      assert.match(await send('virus@example.net', 'virus', EICAR), /^554 5\.7\.1 Malware found \(/);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(atSink('virus@example.net').length, 0);
    });

    it('quarantine: one copy in the store (0600), `sluice quarantine list` shows it, release delivers it to the sink', async function () {
      requirePeer(this, existsSync(cliMain), `built CLI at ${cliMain}`);
      assert.equal(await send('held@example.net', 'quarantine me', 'please review'), '250 2.0.0 Ok: message accepted for review\r\n');
      const store = new QuarantineStore(qdir, { create: false });
      const [entry] = await store.list();
      assert.ok(entry, 'one quarantined message');
      assert.equal(statSync(store.messagePath(entry.id)).mode & 0o777, 0o600);
      assert.match(readFileSync(store.messagePath(entry.id), 'latin1'), /^X-NAT-Received: from \[127\.0\.0\.1\] by sluice\.test\r\nSubject: quarantine me\r\nFrom: a@example\.org\r\nX-Virus-Status: Clean\r\nX-Spam-Status: No,/);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(atSink('held@example.net').length, 0, 'the upstream never saw the message');
      const cli = (args: string[]) =>
        new Promise<{ code: number; out: string }>((resolve) => {
          const c = spawn(process.execPath, [cliMain, 'quarantine', ...args, '--dir', qdir], { stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          c.stdout.on('data', (d: Buffer) => (out += d.toString()));
          c.stderr.on('data', (d: Buffer) => (out += d.toString()));
          c.on('close', (code) => resolve({ code: code ?? -1, out }));
        });
      const list = await cli(['list']);
      assert.equal(list.code, 0, list.out);
      assert.ok(list.out.includes(entry.id), list.out);
      assert.ok(list.out.includes('held@example.net'), list.out);
      const rel = await cli(['release', entry.id, '--to', `127.0.0.1:${sink!.port}`]);
      assert.equal(rel.code, 0, rel.out);
      const end = Date.now() + 10_000;
      while (atSink('held@example.net').length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const [m] = atSink('held@example.net');
      assert.equal(header(m, 'Subject'), 'quarantine me');
      assert.equal(header(m, 'X-Virus-Status'), 'Clean');
      assert.deepEqual(await store.list(), []);
    });
  });
});
