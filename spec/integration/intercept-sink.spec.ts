/**
 * The intercept door with real peers and real rules: swaks, smtp-source and a raw socket as clients, Postfix's
 * smtp-sink as the upstream (every delivered message dumped and read back as stored).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { requirePeer } from '../helpers/ci-guard.js';
import { startSmtpSink, smtpSinkAvailable, type SmtpSink } from '../helpers/smtp-sink.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { realPolicy, startInterceptDoor, until, type InterceptHarness } from '../helpers/intercept-harness.js';
import { rawClient } from '../helpers/smtp-raw-client.js';
import { lockKey } from '../../lib/policy/lock-store.js';

const SMTP_SOURCE = '/usr/sbin/smtp-source';

const RULES = `
rule early at connect: earlytalker => reject 554 5.7.1 "Next time wait for MTA greeting"
rule nat at data: => add header "X-NAT-Received" "from [{client.ip}]:{client.port} by {proxy.name} with TPROXY id {session.id}"
rule badhelo at helo: helo ~ /^localhost$/ => reject 550 5.7.1 "Bad HELO" lock 1h reason "REGEX_HELO"
rule badrcpt at rcpt: rcpt == "nobody@example.net" => reject 550 5.1.1 "No such user here"
rule spamsubj at eoh: header("Subject") ~ /viagra/ => reject 550 5.7.1 "Spam subject"
rule bigmsg at eom: size > 2MB => reject 552 5.3.4 "Too big for this test"
`;

function smtpSource(args: string[], timeoutMs = 30_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(SMTP_SOURCE, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, out: String(stdout) + String(stderr) });
    });
  });
}

describe('intercept door with smtp-sink, swaks, smtp-source and real rules', function () {
  this.timeout(30_000);
  let sink: SmtpSink;
  let h: InterceptHarness;

  before(function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
    requirePeer(this, swaksAvailable, 'swaks');
    requirePeer(this, existsSync(SMTP_SOURCE), 'smtp-source (postfix)');
  });

  beforeEach(async () => {
    sink = await startSmtpSink();
    h = await startInterceptDoor({ upstreamPort: sink.port, policy: (locks) => realPolicy(RULES, locks) });
  });

  afterEach(async () => {
    await h?.stop();
    await sink?.stop();
  });

  it('swaks: a clean message is delivered with X-NAT-Received as its first header; server replies relayed', async () => {
    const r = await swaks({ server: '127.0.0.1', port: h.port, from: 'alice@example.org', to: 'bob@example.net', headers: [['Subject', 'hello']], body: 'line one\n.leading dot\n' });
    assert.equal(r.code, 0, r.transcript);
    assert.ok(r.serverLines.some((l) => /^220 sink\.test ESMTP/.test(l)), r.transcript);
    assert.ok(!r.serverLines.some((l) => /CHUNKING|XCLIENT|XFORWARD/.test(l)), 'CHUNKING/XCLIENT/XFORWARD removed from EHLO');
    assert.ok(r.serverLines.some((l) => /^250-PIPELINING/.test(l)), 'PIPELINING kept');
    const [m] = await sink.waitForMessages(1);
    assert.equal(m!.headers[0]![0], 'X-NAT-Received');
    assert.match(m!.headers[0]![1], /^from \[127\.0\.0\.1\]:\d+ by sluice\.test with TPROXY id \S+$/);
    assert.equal(m!.sender, 'alice@example.org');
    assert.deepEqual(m!.recipients, ['bob@example.net']);
    assert.match(m!.body, /line one\n\.leading dot\n/);
    await until(() => h.events('EOM').length === 1);
    const eom = h.events('EOM')[0]!;
    assert.equal(eom['code'], 250);
    assert.deepEqual(eom['rules'], ['nat']);
    assert.equal(eom['from'], 'alice@example.org');
  });

  it('a refused recipient is answered by sluice and never reaches the sink; the others are delivered', async () => {
    const r = await swaks({ server: '127.0.0.1', port: h.port, to: ['a@example.net', 'nobody@example.net', 'b@example.net'] });
    assert.equal(r.code, 0, r.transcript);
    assert.ok(r.serverLines.includes('550 5.1.1 No such user here'), r.transcript);
    const [m] = await sink.waitForMessages(1);
    assert.deepEqual(m!.recipients, ['a@example.net', 'b@example.net']);
  });

  it('HELO rule: 550 + lock; the next connection gets 554 at once, with no upstream connection', async () => {
    const r = await swaks({ server: '127.0.0.1', port: h.port, helo: 'localhost' });
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('550 Bad HELO'), r.transcript); // no enhanced code: EHLO was refused before the upstream advertised any
    assert.ok(await h.locks.isLocked(lockKey('client', '127.0.0.1')));
    const c = await rawClient(h.port);
    assert.equal(await c.reply(), '554 sluice.test Access denied for your host, try again later\r\n');
    c.close();
    await until(() => h.events('LOCKED').length === 1);
    assert.equal(sink.messages().length, 0);
  });

  it('eoh rule: 550 at the end of data, the sink never gets the message', async () => {
    const r = await swaks({ server: '127.0.0.1', port: h.port, headers: [['Subject', 'cheap viagra']] });
    assert.ok(r.serverLines.includes('550 5.7.1 Spam subject'), r.transcript);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(sink.messages().length, 0);
  });

  it('earlytalker: a client that speaks before the greeting gets the rule reply', async () => {
    await h.stop();
    await sink.stop();
    sink = await startSmtpSink({ flags: ['-W', 'connect:1'] });
    h = await startInterceptDoor({ upstreamPort: sink.port, policy: (locks) => realPolicy(RULES, locks) });
    const c = await rawClient(h.port);
    c.write('EHLO eager.test\r\n');
    assert.equal(await c.reply(3000), '554 Next time wait for MTA greeting\r\n');
    c.close();
  });

  it('smtp-source: 40 messages of 10 KB over 4 sessions (10 each) all arrive', async () => {
    const r = await smtpSource(['-c', '-l', '10240', '-m', '40', '-s', '4', '-N', '-f', 'src@example.org', '-t', 'dst@example.net', `127.0.0.1:${h.port}`]);
    assert.equal(r.code, 0, r.out);
    const got = await sink.waitForMessages(40, 15_000);
    assert.equal(got.length, 40);
    for (const m of got) assert.equal(m.headers[0]![0], 'X-NAT-Received');
  });

  it('smtp-source: 150 pipelined recipients in one message', async () => {
    const r = await smtpSource(['-r', '150', '-m', '1', '-f', 'src@example.org', '-t', 'dst@example.net', `127.0.0.1:${h.port}`]);
    assert.equal(r.code, 0, r.out);
    const [m] = await sink.waitForMessages(1);
    assert.equal(m!.recipients.length, 150);
  });

  it('a 100 KB line and NUL bytes in DATA are relayed and counted, not split or lost', async () => {
    const c = await rawClient(h.port);
    await c.reply();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    assert.match(await c.cmd('DATA'), /^354 /);
    const long = 'L'.repeat(100_000);
    assert.match(await c.cmd(`Subject: long\r\n\r\n${long}\r\nnul:\0\0:end\r\n.`), /^250 /);
    await c.cmd('QUIT');
    const [m] = await sink.waitForMessages(1);
    assert.ok(m!.body.includes(long));
    assert.ok(m!.body.includes('nul:\0\0:end'));
  });
});
