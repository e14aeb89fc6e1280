/**
 * Postfix → milter door → real clamd (private instance, test signature for EICAR) → eom rules.
 * The body reaches clamd as the reconstructed message (headers, blank line, body chunks) and the scan result is
 * reduced into the transaction before the eom rules run; the verdict reaches the SMTP client through Postfix.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { compileRuleFiles, MemoryLockStore, PolicyEngine } from '../../lib/policy/index.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { testDeps } from '../helpers/milter-client.js';
import { fixturesDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { EICAR, EICAR_SIGNATURE } from '../helpers/scan-samples.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { SmtpDialog } from '../helpers/milter-smtp-dialog.js';

describe('integration/milter with Postfix and a real clamd', function () {
  this.timeout(60_000);
  let pf: PostfixInstance | undefined;
  let door: Door | undefined;
  let clamd: RunningClamd | undefined;
  let scanners: ConfiguredScannerSet | undefined;

  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable && clamdAvailable(), 'postfix (root), swaks and clamd');
    clamd = await startClamd();
    scanners = createScannerSet({ clamd: { address: `unix:${clamd.socketPath}`, timeout: 10_000, maxSize: 10 * 1024 * 1024 } }, NULL_LOGGER);
    const ruleset = await compileRuleFiles([join(fixturesDir, 'milter', 'milter-scan.rules')]);
    const engine = new PolicyEngine(ruleset, { locks: new MemoryLockStore(), clock: { now: () => Date.now() } });
    const port = await freePort();
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(engine, { scanners }));
    await door.start();
    pf = await startPostfix({ snippets: ['milter'], ports: { 10030: port } });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    await scanners?.close();
    await clamd?.stop();
  });

  it('rejects EICAR at end of DATA with the rule reply naming the signature', async () => {
    const r = await swaks({ server: pf!.host, port: pf!.smtpPort, from: 'a@example.org', to: 'b@example.net', body: `Hello\n${EICAR}\n` });
    assert.notEqual(r.code, 0);
    assert.ok(
      r.serverLines.some((l) => l.startsWith(`550 5.7.1 Malware found (${EICAR_SIGNATURE}`)),
      r.transcript,
    );
  });

  it('passes a clean message with the scan header, and finds EICAR after 150 KB (several body chunks)', async () => {
    const before = pf!.sink!.messages().length;
    const clean = 'clean line of text that fills the message up nicely\r\n'.repeat(3000);
    const d = await SmtpDialog.open(pf!.smtpPort);
    assert.match(await d.reply(), /^220/);
    assert.match(await d.cmd('EHLO client.example'), /^250/);
    assert.match(await d.cmd('MAIL FROM:<a@example.org>'), /^250/);
    assert.match(await d.cmd('RCPT TO:<b@example.net>'), /^250/);
    assert.match(await d.cmd('DATA'), /^354/);
    assert.match(await d.cmd('Subject: clean\r\n\r\n' + clean + '.'), /^250 /);
    assert.match(await d.cmd('MAIL FROM:<a@example.org>'), /^250/);
    assert.match(await d.cmd('RCPT TO:<b@example.net>'), /^250/);
    assert.match(await d.cmd('DATA'), /^354/);
    assert.match(await d.cmd('Subject: late virus\r\n\r\n' + clean + EICAR + '\r\n.'), new RegExp(`^550 5\\.7\\.1 Malware found \\(${EICAR_SIGNATURE.replace(/\./g, '\\.')}`));
    assert.match(await d.cmd('QUIT'), /^221/);
    d.close();
    const [m] = (await pf!.sink!.waitForMessages(before + 1)).slice(before);
    const v = m?.headers.find(([n]) => n === 'X-Sluice-Scan')?.[1] ?? '';
    const size = Number(/^clean, (\d+) bytes$/.exec(v)?.[1]);
    assert.ok(size > clean.length, `scan header ${v}`);
  });
});
