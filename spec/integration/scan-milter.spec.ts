/**
 * Scanning through the milter door behind a real Postfix: swaks → Postfix smtpd → milter door (real clamd, real
 * spamd and a filter command in one ScannerSet) → smtp-sink, under the real rule engine. Asserts what the SMTP
 * client sees on the wire, what is delivered, and the action hook's environment.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { createActionHookRunner, type ActionHookRunner } from '../../lib/daemon/action-hook-runner.js';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { writeScript } from '../helpers/filter-scripts.js';
import { realPolicy } from '../helpers/intercept-harness.js';
import { testDeps } from '../helpers/milter-client.js';
import { lockStoreIn } from '../helpers/postfix-door-deps.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { EICAR, EICAR_SIGNATURE, GTUBE } from '../helpers/scan-samples.js';
import { spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RULES = `
rule scanner-failed at eom: scanner failed => tempfail 451 4.7.1 "Scanner unavailable, try later"
rule virus at eom: virus => reject 554 5.7.1 "Malware found ({virus.name})" hook virus
rule spam at eom: spam => reject 550 5.7.1 "Message marked as SPAM, denied [{spam.score}]"
rule filter-refused at eom: filter.code >= 400 => reject 554 5.7.0 "Refused by the content filter"
rule stamp at eom: => add header "X-Sluice-Scan" "clean; spam={spam.score}"
`;

describe('scanning through the milter door behind a real Postfix', function () {
  this.timeout(90_000);
  let clamd: RunningClamd | undefined;
  let spamd: RunningSpamd | undefined;
  let scanners: ConfiguredScannerSet | undefined;
  let hooks: ActionHookRunner | undefined;
  let door: Door | undefined;
  let locks: LockStore | undefined;
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
    locks = lockStoreIn(temp.path);
    const policy = realPolicy(RULES, locks);
    const port = await freePort();
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(policy, { scanners, effects: hooks, locks }));
    await door.start();
    pf = await startPostfix({ snippets: ['milter'], ports: { 10030: port } });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    hooks?.close();
    await scanners?.close();
    await locks?.close();
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
    assert.match(env, /^FOUND=virus$/m);
    assert.match(env, /^RULE=virus$/m);
    assert.match(env, /^MAIL_FROM=sender@example\.org$/m);
    assert.match(env, /^SOURCE_IP=127\.0\.0\.1$/m);
  });

  it('rejects GTUBE as spam with the score', async () => {
    const r = await send(`${GTUBE}\n`);
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('550 5.7.1 Message marked as SPAM, denied [1000]'), r.serverLines.join('\n'));
  });

  it('refuses when the filter command refuses (scan.filter.code)', async () => {
    const r = await send('this contains a forbidden-word indeed');
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('554 5.7.0 Refused by the content filter'), r.serverLines.join('\n'));
  });

  it('tempfails when clamd is down (scan.failed), so nothing is lost', async () => {
    clamd!.kill();
    await new Promise((res) => setTimeout(res, 200));
    const r = await send('clamd is gone now');
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('451 4.7.1 Scanner unavailable, try later'), r.serverLines.join('\n'));
  });
});
