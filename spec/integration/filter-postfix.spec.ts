/**
 * Real Postfix after-queue content filter (conf/postfix/filter.main.cf + filter.master.cf):
 *   swaks (from 127.0.0.2/.3) → Postfix smtpd → queue → `sluice` smtp transport with XFORWARD → filter door
 *   → re-injection smtpd (10026, no filter) → smtp-sink.
 * The real engine runs spec/fixtures/postfix/postfix-test.rules. Asserts what is delivered, what the rules saw (the ORIGINAL client from XFORWARD), and that nothing is lost when
 * the next hop is down or refuses (the mail stays deferred in Postfix's queue and is delivered later).
 */
import assert from 'node:assert/strict';
import { createFilterDoor } from '../../lib/milter/filter-door.js';
import { freePort } from '../helpers/ports.js';
import { usePostfixDoor } from '../helpers/postfix-door-fixture.js';
import { doorDeps, scriptedPolicy } from '../helpers/postfix-door-deps.js';
import { postfixTestEngine, type RecordingPolicy } from '../helpers/postfix-rules.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { swaks } from '../helpers/swaks.js';

describe('filter door as Postfix after-queue content_filter (XFORWARD, re-injection)', function () {
  this.timeout(60_000);
  let policy: RecordingPolicy;
  const fx = usePostfixDoor('sluice-filter-pf-', async ({ dir, locks }) => {
    policy = await postfixTestEngine();
    const doorPort = await freePort();
    const reinject = await freePort();
    const door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port: doorPort }, nextHop: { host: '127.0.0.1', port: reinject }, spoolDir: dir }, doorDeps({ policy, locks }));
    return { door, postfix: { snippets: ['filter'], ports: { 10028: doorPort, 10026: reinject } } };
  });

  const send = (o: { from?: string; to: string | string[]; body?: string; headers?: Array<[string, string]>; source?: string }) =>
    swaks({ server: fx.pf.host, port: fx.pf.smtpPort, helo: 'client.example', ...o, extra: ['--local-interface', o.source ?? '127.0.0.2'] });

  it('judges each queued message with the ORIGINAL client from XFORWARD and delivers it with the header edits', async () => {
    policy.calls.length = 0;
    const r = await send({ to: 'alice@example.net', headers: [['Subject', 'hello']] });
    assert.equal(r.code, 0, r.transcript);
    const [m] = await fx.pf.sink!.waitForMessages(1);
    await fx.pf.waitForQueueEmpty();
    const tagged = m!.headers.find(([n]) => n === 'X-Sluice-Client');
    assert.deepEqual(tagged, ['X-Sluice-Client', '127.0.0.2 helo=client.example']);
    assert.equal(m!.headers.find(([n]) => n === 'Subject')?.[1], 'hello');
    assert.deepEqual(m!.recipients, ['alice@example.net']);
    // The rules saw the original client, not Postfix's smtp client (127.0.0.1).
    const connect = policy.calls.find((c) => c.stage === 'connect')!;
    assert.equal(connect.tx.session.client.ip, '127.0.0.2');
    assert.ok(connect.tx.session.client.port > 0);
    assert.equal(connect.tx.session.destinationSource, 'xforward');
    // 127.0.0.2 has no PTR: Postfix says "unknown" and passes that on as NAME.
    assert.equal(connect.tx.session.clientName, 'unknown');
    // XFORWARD was passed on to the re-injection smtpd: it logs the original client and queue id.
    const log = await fx.pf.waitForLog(/client=localhost\[127\.0\.0\.1\], orig_queue_id=([0-9A-F]+), orig_client=unknown\[127\.0\.0\.2\]/);
    assert.ok(log[1]);
    // The body arrived intact (spooled, streamed, dot-stuffing round trip).
    assert.match(m!.body, /This is a test mailing/);
  });

  it('keeps dot-stuffed lines and long bodies intact', async () => {
    const before = fx.pf.sink!.messages().length;
    const body = ['.leading dot', '..two dots', '.', 'x'.repeat(998), ...Array.from({ length: 3000 }, (_, i) => `line ${i} ${'y'.repeat(60)}`)].join('\n');
    const r = await send({ to: 'bob@example.net', body });
    assert.equal(r.code, 0, r.transcript);
    const msgs = await fx.pf.sink!.waitForMessages(before + 1);
    const got = msgs[msgs.length - 1]!.body.replace(/\r\n/g, '\n');
    assert.ok(got.startsWith(body), 'body differs');
  });

  it('a reject rule (client address from XFORWARD) makes Postfix bounce, nothing is delivered to the recipient', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ from: 'sender@example.org', to: 'carol@example.net', source: '127.0.0.3' });
    assert.equal(r.code, 0, r.transcript);
    await fx.pf.waitForLog(/to=<carol@example\.net>.*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 554 5\.7\.1 Client 127\.0\.0\.3 not welcome \(in reply to MAIL FROM command\)\)/);
    await fx.pf.waitForQueueEmpty();
    const msgs = await fx.pf.sink!.waitForMessages(before + 1);
    // The only new delivery is the bounce to the sender.
    const fresh = msgs.slice(before);
    assert.equal(fresh.length, 1);
    assert.equal(fresh[0]!.sender, '');
    assert.deepEqual(fresh[0]!.recipients, ['sender@example.org']);
  });

  it('content rejected at end of message: the next hop never gets the final dot', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: 'dave@example.net', headers: [['Subject', 'cheap VIAGRA']] });
    assert.equal(r.code, 0, r.transcript);
    await fx.pf.waitForLog(/to=<dave@example\.net>.*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.7\.1 Spam content \(in reply to end of DATA command\)\)/);
    await fx.pf.waitForQueueEmpty();
    const fresh = (await fx.pf.sink!.waitForMessages(before + 1)).slice(before);
    assert.ok(fresh.every((m) => !m.recipients.includes('dave@example.net')));
  });

  it('per-recipient answers: a rule rejects one recipient, the other is delivered', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: ['nobody@example.net', 'erin@example.net'] });
    assert.equal(r.code, 0, r.transcript);
    await fx.pf.waitForLog(/to=<nobody@example\.net>.*status=bounced .*550 5\.1\.1 No such user here \(in reply to RCPT TO command\)/);
    await fx.pf.waitForQueueEmpty();
    const fresh = (await fx.pf.sink!.waitForMessages(before + 2)).slice(before);
    const delivered = fresh.find((m) => m.recipients.includes('erin@example.net'));
    assert.ok(delivered);
    assert.deepEqual(delivered.recipients, ['erin@example.net']);
  });

  it('discard answers 250 and delivers nothing', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: 'frank@example.net', headers: [['Subject', 'please discard me']] });
    assert.equal(r.code, 0, r.transcript);
    await fx.pf.waitForLog(/to=<frank@example\.net>.*status=sent \(250 2\.0\.0 Ok: discarded by policy\)/);
    await fx.pf.waitForQueueEmpty();
    assert.equal(fx.pf.sink!.messages().length, before);
  });
});

describe('filter door: next hop down or refusing — Postfix keeps the mail queued', function () {
  this.timeout(60_000);
  let nextHop: SmtpSink | undefined;
  let nextPort = 0;
  const fx = usePostfixDoor('sluice-filter-down-', async ({ locks }) => {
    const doorPort = await freePort();
    nextPort = await freePort();
    // The next hop here is an smtp-sink on nextPort (not started yet): Postfix's own delivery never happens, so
    // whatever reaches nextPort came through the filter door.
    const door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port: doorPort }, nextHop: { host: '127.0.0.1', port: nextPort }, connectTimeoutMs: 2000 }, doorDeps({ policy: scriptedPolicy(() => undefined), locks }));
    return { door, postfix: { snippets: ['filter'], ports: { 10028: doorPort, 10026: await freePort() } } };
  });
  after(async () => {
    await nextHop?.stop();
  });

  it('next hop down: 421 at greeting, mail deferred; refusing: its 4xx relayed, still deferred; back: delivered', async () => {
    const r = await swaks({ server: fx.pf.host, port: fx.pf.smtpPort, to: 'grace@example.net' });
    assert.equal(r.code, 0, r.transcript);
    let q = await fx.pf.waitForQueue((q) => q.length === 1 && q[0]!.queue_name === 'deferred' && (q[0]!.recipients[0]!.delay_reason ?? '') !== '');
    assert.match(q[0]!.recipients[0]!.delay_reason!, /421 4\.4\.1 .*Next hop unavailable/);

    // The next hop answers but refuses the final dot (soft): its answer is Postfix's answer; still queued.
    nextHop = await startSmtpSink({ port: nextPort, flags: ['-r', '.'] });
    await fx.pf.flush();
    q = await fx.pf.waitForQueue((q) => q.length === 1 && /in reply to end of DATA command/.test(q[0]!.recipients[0]!.delay_reason ?? ''));
    assert.match(q[0]!.recipients[0]!.delay_reason!, /said: 4\d\d /);
    await nextHop.stop();

    // The next hop is back: the very same message is delivered, once.
    nextHop = await startSmtpSink({ port: nextPort });
    await fx.pf.flush();
    await fx.pf.waitForQueueEmpty();
    const msgs = await nextHop.waitForMessages(1);
    assert.equal(msgs.length, 1);
    assert.deepEqual(msgs[0]!.recipients, ['grace@example.net']);
  });
});
