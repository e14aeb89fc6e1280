/**
 * proxsmtpd's role end to end: a real Postfix hands queued mail (content_filter, XFORWARD) to the filter door,
 * which runs the real rule engine over real clamd and spamd results and the external filter command, then
 * re-injects into Postfix's second smtpd, which delivers to smtp-sink. Asserted on what Postfix logs and what
 * the sink receives: the filter's rewritten message is what gets delivered; its reply refuses; its 2xx drops;
 * EICAR is refused with the virus name; spam goes to the quarantine, and `sluice quarantine release` delivers it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import type { Door } from '../../lib/daemon/door.js';
import { QuarantineStore } from '../../lib/daemon/quarantine-store.js';
import { createFilterDoor } from '../../lib/milter/filter-door.js';
import { compileRules, PolicyEngine } from '../../lib/policy/index.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { writeScript } from '../helpers/filter-scripts.js';
import { cliMain } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { doorDeps, lockStoreIn } from '../helpers/postfix-door-deps.js';
import { EICAR, EICAR_SIGNATURE, GTUBE } from '../helpers/scan-samples.js';
import { spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RULES = `
rule trace at data: => add header "X-Sluice-Trace" "filter door"
rule scanner-failed at eom: scanner failed => tempfail 451 4.3.0 "Scanner failed, try again later"
rule virus at eom: virus => reject 554 5.7.1 "Malware found ({virus.name})"
rule filter-refused at eom: filter.code >= 400 => reject 550 5.7.1 "Content rejected by the filter"
rule filter-drop at eom: filter.code >= 200 and filter.code < 300 => discard
rule spam at eom: spam => quarantine "spam score {spam.score}"
`;

describe('scanning through the filter door (Postfix content_filter) with the real rule engine', function () {
  this.timeout(120_000);
  const temp = makeTempDir('sluice-scan-filter-');
  let clamd: RunningClamd | undefined;
  let spamd: RunningSpamd | undefined;
  let scanners: ConfiguredScannerSet | undefined;
  let locks: LockStore | undefined;
  let door: Door | undefined;
  let pf: PostfixInstance | undefined;
  let reinject = 0;
  const qdir = join(temp.path, 'quarantine');

  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
    requirePeer(this, clamdAvailable() && spamdAvailable(), 'clamd and spamd');
    [clamd, spamd] = await Promise.all([startClamd(), startSpamd()]);
    const scripts = join(temp.path, 'scripts');
    mkdirSync(scripts);
    // proxsmtpd-style filter (pipe mode): refuse, drop, or add a header and pass the message through.
    const filter = writeScript(
      scripts,
      'filter.sh',
      [
        'tmp="$TMPDIR/in.$$"; cat > "$tmp"',
        'if grep -q forbidden-word "$tmp"; then rm -f "$tmp"; echo "554 5.7.0 Filter says no" >&2; exit 1; fi',
        'if grep -q drop-me-quietly "$tmp"; then rm -f "$tmp"; echo "250 2.0.0 dropped" >&2; exit 1; fi',
        'printf "X-Filtered: by-filter-command sender=%s\\r\\n" "$SENDER"; cat "$tmp"; rm -f "$tmp"',
      ].join('\n'),
    );
    scanners = createScannerSet(
      {
        clamd: { address: clamd.socketPath, timeout: 10_000, maxSize: 10 * 1024 * 1024 },
        spamd: { address: spamd.address, timeout: 20_000, maxSize: 512 * 1024 },
        filter: { command: [filter], mode: 'pipe', timeout: 10_000, maxSize: 10 * 1024 * 1024, tempDir: join(temp.path, 'filter-tmp') },
        tempDir: join(temp.path, 'spool'),
      },
      NULL_LOGGER,
    );
    locks = lockStoreIn(temp.path);
    const policy = new PolicyEngine(compileRules([{ file: 'scan.rules', text: RULES }]), { locks, clock: SYSTEM_CLOCK }, { proxyName: 'sluice.test' });
    const store = new QuarantineStore(qdir);
    const doorPort = await freePort();
    reinject = await freePort();
    door = createFilterDoor(
      {
        listen: { kind: 'tcp', host: '127.0.0.1', port: doorPort },
        nextHop: { host: '127.0.0.1', port: reinject },
        spoolDir: temp.path,
        quarantine: async (content, info) => {
          await store.add({ sender: info.sender, recipients: info.recipients, client: { ip: info.client, port: 0 }, sessionId: info.sessionId, door: 'filter', reason: info.reason }, content);
        },
      },
      doorDeps({ policy, locks, scanners }),
    );
    await door.start();
    pf = await startPostfix({ snippets: ['filter'], ports: { 10025: doorPort, 10026: reinject } });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    await scanners?.close();
    await locks?.close();
    await clamd?.stop();
    await spamd?.stop();
    temp.remove();
  });

  const send = (to: string, body: string, subject = 'test') =>
    swaks({ server: pf!.host, port: pf!.smtpPort, helo: 'client.example', from: 'sender@example.org', to, body, headers: [['Subject', subject]] });
  const delivered = (rcpt: string) => pf!.sink!.messages().filter((m) => m.recipients.includes(rcpt));
  const waitDelivered = async (rcpt: string, ms = 20_000) => {
    const end = Date.now() + ms;
    for (;;) {
      const got = delivered(rcpt);
      if (got.length > 0) return got;
      if (Date.now() > end) throw new Error(`nothing delivered to ${rcpt}\n${pf!.log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  it('delivers the filter command\'s rewritten message (header added, body intact)', async () => {
    const r = await send('clean@example.net', 'A perfectly normal message.\n.\nwith a dot line');
    assert.equal(r.code, 0, r.transcript);
    const [m] = await waitDelivered('clean@example.net');
    assert.equal(m?.headers.find(([n]) => n === 'X-Filtered')?.[1], 'by-filter-command sender=sender@example.org');
    assert.equal(m?.headers.find(([n]) => n === 'X-Sluice-Trace')?.[1], 'filter door');
    assert.match(m?.body ?? '', /A perfectly normal message\.\n\.\nwith a dot line/);
  });

  it('refuses EICAR with the virus name (Postfix bounces it; nothing delivered)', async () => {
    const r = await send('virus@example.net', `see attachment\n${EICAR}\n`);
    assert.equal(r.code, 0, r.transcript);
    await pf!.waitForLog(new RegExp(`to=<virus@example\\.net>.*status=bounced .*554 5\\.7\\.1 Malware found \\(${EICAR_SIGNATURE.replace(/\./g, '\\.')}\\.UNOFFICIAL\\)`), 20_000);
    assert.equal(delivered('virus@example.net').length, 0);
  });

  it('refuses when the filter command refuses, and drops silently on its 2xx', async () => {
    await send('refused@example.net', 'this has a forbidden-word in it');
    await pf!.waitForLog(/to=<refused@example\.net>.*status=bounced .*550 5\.7\.1 Content rejected by the filter/, 20_000);
    await send('dropped@example.net', 'please drop-me-quietly thanks');
    await pf!.waitForLog(/to=<dropped@example\.net>.*status=sent/, 20_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(delivered('dropped@example.net').length, 0);
    assert.equal(delivered('refused@example.net').length, 0);
  });

  it('quarantines GTUBE spam; `sluice quarantine release` delivers it to the recipients', async function () {
    requirePeer(this, existsSync(cliMain), `built CLI at ${cliMain}`);
    await send('spam@example.net', `${GTUBE}\n`, 'quarantine me');
    await pf!.waitForLog(/to=<spam@example\.net>.*status=sent/, 20_000);
    const store = new QuarantineStore(qdir, { create: false });
    const [entry] = await store.list();
    assert.ok(entry, 'one quarantined message');
    assert.equal(entry.reason, 'spam score 1000');
    assert.deepEqual(entry.recipients, ['spam@example.net']);
    assert.equal(delivered('spam@example.net').length, 0);
    const res = await new Promise<{ code: number; out: string }>((resolve) => {
      const c = spawn(process.execPath, [cliMain, 'quarantine', 'release', entry.id, '--dir', qdir, '--to', `127.0.0.1:${reinject}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (out += d.toString()));
      c.on('close', (code) => resolve({ code: code ?? -1, out }));
    });
    assert.equal(res.code, 0, res.out);
    const [m] = await waitDelivered('spam@example.net');
    assert.equal(m?.headers.find(([n]) => n === 'Subject')?.[1], 'quarantine me');
    // The quarantined copy is the message as it would have gone on: the filter command's rewrite and the rules' edits.
    assert.equal(m?.headers.find(([n]) => n === 'X-Filtered')?.[1], 'by-filter-command sender=sender@example.org');
    assert.equal(m?.headers.find(([n]) => n === 'X-Sluice-Trace')?.[1], 'filter door');
    assert.deepEqual(await store.list(), []);
  });
});
