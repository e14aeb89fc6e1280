/**
 * The milter door with `delayReject` behind a real, private Postfix: CONNECT, HELO and MAIL are judged on arrival
 * but answered at RCPT (Postfix's smtpd_delay_reject model), so a refusal decided there refuses each recipient
 * with the rule's own text, and clean mail still gets its edits. Over TCP and over a unix socket: on both the door
 * also asks Postfix not to send DATA (its only rule adds a header) and runs DATA's rules at the next event; over TCP
 * that needs the native addon's prompt ACKs (lib/milter/prompt-ack.ts), or Postfix's unanswered hand-off flush
 * stalls on Nagle.
 */
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { Door } from '../../lib/daemon/door.js';
import { Proto } from '../../lib/milter/milter-constants.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { inCI, requirePeer } from '../helpers/ci-guard.js';
import { memoryLogger, promptAcksOverTcp, testDeps } from '../helpers/milter-client.js';
import { milterTestEngine } from '../helpers/milter-rules.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { smtpSource } from '../helpers/smtp-source.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { makeTempDir } from '../helpers/temp-dir.js';

for (const transport of ['inet', 'unix'] as const) describe(`integration/milter with delayReject behind a real Postfix, ${transport} socket`, function () {
  this.timeout(60_000);
  let pf: PostfixInstance | undefined;
  let door: Door | undefined;
  const logger = memoryLogger();
  const dir = makeTempDir('sluice-milter-sock-');

  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
    const port = await freePort();
    // Postfix's smtpd runs as `postfix`: a traversable directory and a socket it may open.
    chmodSync(dir.path, 0o755);
    const path = join(dir.path, 'milter.sock');
    const listen = transport === 'inet' ? `inet:127.0.0.1:${port}` : `unix:${path}`;
    door = createMilterDoor({ listen, delayReject: true, ...(transport === 'unix' ? { socketMode: 0o666 } : {}) }, testDeps(await milterTestEngine(), { logger }));
    await door.start();
    pf = await startPostfix({ snippets: ['milter'], ports: { 10030: port }, ...(transport === 'unix' ? { main: { smtpd_milters: `unix:${path}` } } : {}) });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    dir.remove();
  });

  it(`negotiates NODATA (no DATA rule refuses)${transport === 'inet' ? ', over TCP with prompt ACKs from the native addon' : ''}`, async () => {
    if (transport === 'inet' && inCI) assert.ok(promptAcksOverTcp, 'CI builds the native addon (npm install), so TCP gets prompt ACKs');
    const r = await send({ from: 'alice@example.com', to: 'bob@example.net' });
    assert.equal(r.code, 0, r.transcript);
    const neg = logger.records.find((x) => x.msg === 'milter options negotiated');
    assert.ok(neg, 'the door logged its negotiation');
    const protocol = (neg.obj as { protocol: number }).protocol;
    assert.equal((protocol & Proto.NODATA) !== 0, transport === 'unix' || promptAcksOverTcp);
    assert.equal(protocol & Proto.NR_DATA, 0);
  });

  it('no message waits on a delayed ACK: 20 sessions one after another, each well under the 40 ms Nagle stall', async () => {
    // Without prompt ACKs, Postfix's hand-off flush (DATA's macros, unanswered with NODATA) and cleanup's flush
    // (headers .. end of message) follow each other with no answer between: cleanup's write waits on Nagle for our
    // ACK, which Linux delays by at least 40 ms. Measured: ~47 ms per message then, ~3-4 ms with prompt ACKs.
    const before = pf!.sink!.messages().length;
    const t0 = Date.now();
    const r = await smtpSource(['-s', '1', '-m', '20', '-l', '2000', '-f', 'alice@example.com', '-t', 'bob@example.net', `${pf!.host}:${pf!.smtpPort}`]);
    const ms = Date.now() - t0;
    assert.equal(r.code, 0, r.out);
    assert.ok(ms < 20 * 30, `20 messages took ${ms} ms: a Nagle stall costs at least 40 ms each`);
    assert.ok((await pf!.sink!.waitForMessages(before + 20)).length >= before + 20);
  });

  function send(o: { from?: string; to?: string | string[]; helo?: string; extra?: string[] }) {
    return swaks({ server: pf!.host, port: pf!.smtpPort, helo: o.helo ?? 'client.example', ...o });
  }

  it('a CONNECT refusal is given at RCPT with the rule text (not Postfix greeting 554)', async () => {
    const r = await send({ to: 'x@example.net', extra: ['--local-interface', '127.0.0.2'] });
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.some((l) => /^220 /.test(l)), r.transcript);
    assert.ok(r.serverLines.includes('554 5.7.1 Not welcome here'), r.transcript);
    await pf!.waitForLog(/milter-reject: RCPT from [^\n]*127\.0\.0\.2\]: 554 5\.7\.1 Not welcome here/);
  });

  it('HELO and MAIL refusals come at RCPT, for every recipient', async () => {
    const helo = await send({ helo: 'bad.helo.example', to: 'x@example.net' });
    assert.notEqual(helo.code, 0);
    assert.ok(helo.serverLines.includes('550 5.7.1 Bad HELO'), helo.transcript);
    const blocked = await send({ from: 'blocked@example.com', to: ['x@example.net', 'y@example.net'] });
    assert.notEqual(blocked.code, 0);
    assert.equal(blocked.serverLines.filter((l) => l === '550 5.7.1 Sender blocked').length, 2, blocked.transcript);
  });

  it('clean mail is delivered with its data-stage and eom headers; a MAIL discard still discards', async () => {
    const before = pf!.sink!.messages().length;
    const r = await send({ from: 'alice@example.com', to: ['bad@example.net', 'bob@example.net'] });
    assert.ok(r.serverLines.includes('550 5.1.1 No such user here'), r.transcript);
    const [m] = (await pf!.sink!.waitForMessages(before + 1)).slice(before);
    assert.ok(m);
    assert.deepEqual(m.recipients, ['bob@example.net']);
    assert.deepEqual(m.headers.filter(([n]) => n === 'X-Sluice-Trace').map(([, v]) => v), ['milter sluice.test']);
    const d = await send({ from: 'discard@example.com', to: 'bob@example.net' });
    assert.equal(d.code, 0, d.transcript);
    await pf!.waitForLog(/milter-discard/);
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(pf!.sink!.messages().length, before + 1, 'the discarded message was not delivered');
  });
});
