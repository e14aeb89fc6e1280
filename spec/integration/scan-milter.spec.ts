/**
 * Scanning through the milter door behind a real Postfix: swaks → Postfix smtpd → milter door (real clamd, real
 * spamd and a filter command in one ScannerSet) → smtp-sink. The policy is scripted (the eom verdicts a ruleset
 * would give on scan.*), so this asserts what the scanners report and what the SMTP client sees on the wire.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import type { Verdict } from '../../lib/core/verdict.js';
import { createActionHookRunner, type ActionHookRunner } from '../../lib/daemon/action-hook-runner.js';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { writeScript } from '../helpers/filter-scripts.js';
import { scriptedPolicy, testDeps } from '../helpers/milter-client.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { EICAR, EICAR_SIGNATURE, GTUBE } from '../helpers/scan-samples.js';
import { spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const verdict = (x: Partial<Verdict> & Pick<Verdict, 'action'>): Verdict => ({ mutations: [], effects: [], hits: [], ...x });

describe('scanning through the milter door behind a real Postfix', function () {
  this.timeout(90_000);
  let clamd: RunningClamd | undefined;
  let spamd: RunningSpamd | undefined;
  let scanners: ConfiguredScannerSet | undefined;
  let hooks: ActionHookRunner | undefined;
  let door: Door | undefined;
  let pf: PostfixInstance | undefined;
  const temp = makeTempDir('sluice-scan-milter-');
  const hookOut = join(temp.path, 'hook.env');

  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
    requirePeer(this, clamdAvailable() && spamdAvailable(), 'clamd and spamd');
    [clamd, spamd] = await Promise.all([startClamd(), startSpamd()]);
    mkdirSync(join(temp.path, 'scripts'));
    const filter = writeScript(join(temp.path, 'scripts'), 'filter.sh', `if grep -q 'forbidden-word' "$EMAIL"; then echo "554 5.7.0 Policy filter says no" >&2; exit 1; fi; exit 0`);
    scanners = createScannerSet(
      {
        clamd: { address: clamd.socketPath, timeout: 10_000, maxSize: 10 * 1024 * 1024 },
        spamd: { address: spamd.address, timeout: 20_000, maxSize: 512 * 1024 },
        filter: { command: [filter], mode: 'file', timeout: 10_000, maxSize: 10 * 1024 * 1024, tempDir: join(temp.path, 'filter-tmp') },
        tempDir: join(temp.path, 'spool'),
      },
      NULL_LOGGER,
    );
    const hookScript = writeScript(join(temp.path, 'scripts'), 'hook.sh', `env > "${hookOut}.tmp" && mv "${hookOut}.tmp" "${hookOut}"`);
    hooks = createActionHookRunner({ hooks: { virus: { command: [hookScript], timeout: 5000 } }, proxyName: 'sluice.test' }, NULL_LOGGER);
    const policy = scriptedPolicy(['eom'], (stage, tx) => {
      if (stage !== 'eom') return undefined;
      const scan = tx.message.scan;
      if (Object.keys(scan.failed).length > 0) return verdict({ action: 'tempfail', reply: { code: 451, enhanced: '4.7.1', lines: ['Scanner unavailable, try later'] } });
      if (scan.virus?.found)
        return verdict({
          action: 'reject',
          reply: { code: 554, enhanced: '5.7.1', lines: [`Malware found (${scan.virus.name ?? 'unknown'})`] },
          effects: [{ kind: 'hook', hook: 'virus', rule: 'virus', env: { FOUND: 'VIRUS' } }],
        });
      if (scan.spam?.isSpam) return verdict({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: [`Message marked as SPAM, denied [${scan.spam.score}]`] } });
      if (scan.filter && scan.filter.code >= 400) {
        // filter.reply is the text after the code and may start with an enhanced status code.
        const m = /^([245]\.\d{1,3}\.\d{1,3}) (.*)$/.exec(scan.filter.reply ?? '');
        return verdict({ action: 'reject', reply: { code: scan.filter.code, ...(m ? { enhanced: m[1] } : {}), lines: [m?.[2] ?? scan.filter.reply ?? 'Content Rejected'] } });
      }
      return verdict({ action: 'continue', mutations: [{ kind: 'add', name: 'X-Sluice-Scan', value: `clean; spam=${scan.spam?.score ?? '-'}` }] });
    }, { scan: true });
    const port = await freePort();
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(policy, { scanners, effects: hooks }));
    await door.start();
    pf = await startPostfix({ snippets: ['milter'], ports: { 10030: port } });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    hooks?.close();
    await scanners?.close();
    await clamd?.stop();
    await spamd?.stop();
    temp.remove();
  });

  const send = (body: string, to = 'rcpt@example.net') => swaks({ server: pf!.host, port: pf!.smtpPort, helo: 'client.example', from: 'sender@example.org', to, body });

  it('delivers a clean message with the verdict header, scanned by clamd and spamd', async () => {
    const r = await send('Hello, nothing to see here.');
    assert.equal(r.code, 0, r.transcript);
    const [m] = await pf!.sink!.waitForMessages(1);
    assert.equal(m?.headers.find(([n]) => n === 'X-Sluice-Scan')?.[1], 'clean; spam=0');
  });

  it('rejects EICAR at end of data with the virus name, and fires the action hook', async () => {
    const r = await send(`attached:\n${EICAR}\n`);
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes(`554 5.7.1 Malware found (${EICAR_SIGNATURE}.UNOFFICIAL)`), r.serverLines.join('\n'));
    const deadline = Date.now() + 5000;
    while (!existsSync(hookOut) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    const env = readFileSync(hookOut, 'latin1');
    assert.match(env, new RegExp(`^VIRUS_NAME=${EICAR_SIGNATURE.replace(/\./g, '\\.')}\\.UNOFFICIAL$`, 'm'));
    assert.match(env, /^FOUND=VIRUS$/m);
    assert.match(env, /^MAIL_FROM=sender@example\.org$/m);
    assert.match(env, /^SOURCE_IP=127\.0\.0\.1$/m);
  });

  it('rejects GTUBE as spam with the score', async () => {
    const r = await send(`${GTUBE}\n`);
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('550 5.7.1 Message marked as SPAM, denied [1000]'), r.serverLines.join('\n'));
  });

  it('rejects with the filter command\'s own reply', async () => {
    const r = await send('this contains a forbidden-word indeed');
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('554 5.7.0 Policy filter says no'), r.serverLines.join('\n'));
  });

  it('tempfails when clamd is down (scan.failed), so nothing is lost', async () => {
    clamd!.kill();
    await new Promise((res) => setTimeout(res, 200));
    const r = await send('clamd is gone now');
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('451 4.7.1 Scanner unavailable, try later'), r.serverLines.join('\n'));
  });
});
