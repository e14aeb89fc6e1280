/**
 * Content scanning through the intercept door: a private clamd scans the streamed message (INSTREAM, no spool),
 * the final dot is held until the eom rule saw the result. EICAR: 550 and lock, the sink never gets the dot;
 * a clean message is delivered; the locked host is refused at the next connect.
 */
import assert from 'node:assert/strict';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { EICAR, EICAR_SIGNATURE } from '../helpers/scan-samples.js';
import { startSmtpSink, smtpSinkAvailable, type SmtpSink } from '../helpers/smtp-sink.js';
import { realPolicy, startInterceptDoor, type InterceptHarness } from '../helpers/intercept-harness.js';
import { rawClient, type RawClient } from '../helpers/smtp-raw-client.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { lockKey } from '../../lib/policy/lock-store.js';

const RULES = `
rule virus at eom: virus => reject 550 5.7.1 "Virus found: {virus.name}" lock 1h reason "VIRUS"
rule scanfail at eom: scanner failed => tempfail 451 4.3.0 "Scanner unavailable"
`;

async function send(port: number, body: string): Promise<{ c: RawClient; eom: string }> {
  const c = await rawClient(port);
  await c.reply();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  await c.cmd('RCPT TO:<b@example.net>');
  const d = await c.cmd('DATA');
  assert.match(d, /^354 /);
  const eom = await c.cmd(`Subject: scan me\r\n\r\n${body}\r\n.`, 20_000);
  return { c, eom };
}

describe('intercept door with clamd (streamed INSTREAM scan, held final dot)', function () {
  this.timeout(60_000);
  let clamd: RunningClamd;
  let sink: SmtpSink;
  let scanners: ConfiguredScannerSet;
  let h: InterceptHarness;

  before(async function () {
    requirePeer(this, clamdAvailable(), 'clamd (clamav-daemon)');
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
    this.timeout(120_000);
    clamd = await startClamd();
    sink = await startSmtpSink();
    scanners = createScannerSet({ clamd: { address: `unix:${clamd.socketPath}`, timeout: 20_000, maxSize: 10 * 1024 * 1024 } }, NULL_LOGGER);
    h = await startInterceptDoor({ upstreamPort: sink.port, policy: (locks) => realPolicy(RULES, locks), scanners });
  });

  after(async () => {
    await h?.stop();
    await scanners?.close();
    await sink?.stop();
    await clamd?.stop();
  });

  it('a clean message is scanned and delivered', async () => {
    const { c, eom } = await send(h.port, 'nothing to see here\r\n'.repeat(1000));
    assert.match(eom, /^250 /);
    c.close();
    await sink.waitForMessages(1);
  });

  it('EICAR: 550 with the virus name, the sink never receives the message, the host is locked', async () => {
    const before = sink.messages().length;
    const { c, eom } = await send(h.port, 'some text\r\n' + EICAR + '\r\nmore text');
    assert.equal(eom, `550 5.7.1 Virus found: ${EICAR_SIGNATURE}.UNOFFICIAL\r\n`);
    c.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.messages().length, before);
    assert.ok(await h.locks.isLocked(lockKey('client', '127.0.0.1')));
    const c2 = await rawClient(h.port);
    assert.match(await c2.reply(), /^554 sluice\.test Access denied for your host/);
    c2.close();
    await h.locks.unlock(lockKey('client', '127.0.0.1'));
  });

  it('30 messages (each followed by RSET) in one session, then EICAR in the last one: still caught', async () => {
    const before = sink.messages().length;
    const c = await rawClient(h.port);
    try {
      await c.reply();
      await c.cmd('EHLO client.test');
      for (let i = 0; i < 30; i++) {
        await c.cmd('MAIL FROM:<a@example.org>');
        await c.cmd('RCPT TO:<b@example.net>');
        await c.cmd('DATA');
        assert.match(await c.cmd(`Subject: m${i}\r\n\r\nclean ${i}\r\n.`), /^250 /);
        assert.match(await c.cmd('RSET'), /^250 /);
      }
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('RCPT TO:<b@example.net>');
      await c.cmd('DATA');
      assert.match(await c.cmd(`Subject: last\r\n\r\n${EICAR}\r\n.`, 20_000), /^550 5\.7\.1 Virus found/);
    } finally {
      c.close();
    }
    await sink.waitForMessages(before + 30);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sink.messages().length, before + 30);
    await h.locks.unlock(lockKey('client', '127.0.0.1'));
  });

  it('clamd gone: the scanner failure rule tempfails at the end of data, nothing delivered', async () => {
    const before = sink.messages().length;
    clamd.kill();
    const { c, eom } = await send(h.port, 'hello');
    assert.equal(eom, '451 4.3.0 Scanner unavailable\r\n');
    c.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.messages().length, before);
  });
});
