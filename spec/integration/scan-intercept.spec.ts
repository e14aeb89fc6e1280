/**
 * The intercept door (streaming, final dot held) with spamd, the filter command and a size-capped clamd, under
 * the real rule engine. Complements intercept-clamd.spec.ts (EICAR, lock, clamd down): here spam is refused at
 * the held dot, the filter's refusal reaches the client, and a message over clamd's limit is visibly "skipped"
 * to the rules (here a rule refuses it), never silently passed as clean. Asserted on the wire and at smtp-sink.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { writeScript } from '../helpers/filter-scripts.js';
import { realPolicy, startInterceptDoor, type InterceptHarness } from '../helpers/intercept-harness.js';
import { GTUBE } from '../helpers/scan-samples.js';
import { sendOneMessage } from '../helpers/relay-fixture.js';
import { smtpSinkAvailable, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RULES = `
rule scanner-failed at eom: scanner failed => tempfail 451 4.3.0 "Scanner failed, try again later"
rule spam at eom: spam => reject 550 5.7.1 "Message marked as SPAM, denied [{spam.score}]"
rule filter-refused at eom: filter.code >= 400 => reject 554 5.7.0 "Refused by the content filter"
rule too-big-to-scan at eom: scanner(clamd) skipped => reject 552 5.3.4 "Too big for the virus scanner"
`;

function send(port: number, rcpt: string, body: string): Promise<string> {
  return sendOneMessage(port, rcpt, `Subject: scan me\r\n\r\n${body}`);
}

describe('intercept door with spamd, the filter command and a size-capped clamd (real rule engine)', function () {
  this.timeout(90_000);
  const temp = makeTempDir('sluice-scan-icpt-');
  let clamd: RunningClamd | undefined;
  let spamd: RunningSpamd | undefined;
  let sink: SmtpSink | undefined;
  let scanners: ConfiguredScannerSet | undefined;
  let h: InterceptHarness | undefined;

  before(async function () {
    requirePeer(this, clamdAvailable() && spamdAvailable(), 'clamd and spamd');
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
    [clamd, spamd, sink] = await Promise.all([startClamd({ streamMaxLength: '1M' }), startSpamd(), startSmtpSink()]);
    mkdirSync(join(temp.path, 'scripts'));
    const filter = writeScript(join(temp.path, 'scripts'), 'f.sh', `if grep -q forbidden-word "$EMAIL"; then echo "554 nope" >&2; exit 1; fi`);
    scanners = createScannerSet(
      {
        clamd: { address: clamd.socketPath, timeout: 10_000, maxSize: 64 * 1024 },
        spamd: { address: spamd.address, timeout: 20_000, maxSize: 256 * 1024 },
        filter: { command: [filter], mode: 'file', timeout: 10_000, maxSize: 1024 * 1024, tempDir: join(temp.path, 'ftmp') },
        tempDir: join(temp.path, 'spool'),
      },
      NULL_LOGGER,
    );
    h = await startInterceptDoor({ upstreamPort: sink.port, policy: (locks) => realPolicy(RULES, locks), scanners });
  });

  after(async () => {
    await h?.stop();
    await scanners?.close();
    await sink?.stop();
    await clamd?.stop();
    await spamd?.stop();
    temp.remove();
  });

  it('refuses GTUBE at the held final dot with the spam score; the sink gets no message', async () => {
    const before = sink!.messages().length;
    assert.equal(await send(h!.port, 'spam@example.net', `${GTUBE}`), '550 5.7.1 Message marked as SPAM, denied [1000]\r\n');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink!.messages().length, before);
  });

  it('passes the filter command\'s refusal to the client', async () => {
    assert.equal(await send(h!.port, 'f@example.net', 'a forbidden-word here'), '554 5.7.0 Refused by the content filter\r\n');
  });

  it('a clean message over clamd\'s limit is "skipped" for the rules (refused here); one under it is delivered', async () => {
    const big = 'clean padding line, nothing to see\r\n'.repeat(4000); // ~140 KB: over clamd's 64 KB
    assert.equal(await send(h!.port, 'big@example.net', big), '552 5.3.4 Too big for the virus scanner\r\n');
    const small = 'clean padding line, nothing to see\r\n'.repeat(1000); // ~36 KB
    assert.match(await send(h!.port, 'small@example.net', small), /^250 /);
    const msgs = await sink!.waitForMessages(1);
    assert.ok(msgs.some((x) => x.recipients.includes('small@example.net')));
    assert.ok(!msgs.some((x) => x.recipients.includes('big@example.net')));
  });
});
