/**
 * Real Postfix (conf/postfix/policy.main.cf: check_policy_service at RCPT and END-OF-MESSAGE) asking the policy
 * door running the real engine with spec/fixtures/postfix/postfix-test.rules; swaks as the SMTP client; smtp-sink as
 * the next hop. Asserts what the client sees and what is delivered.
 */
import assert from 'node:assert/strict';
import { createPolicyDoor } from '../../lib/milter/policy-door.js';
import { freePort } from '../helpers/ports.js';
import { usePostfixDoor } from '../helpers/postfix-door-fixture.js';
import { doorDeps } from '../helpers/postfix-door-deps.js';
import { postfixTestEngine, type RecordingPolicy } from '../helpers/postfix-rules.js';
import { swaks } from '../helpers/swaks.js';

describe('policy door behind a real Postfix (check_policy_service)', function () {
  this.timeout(60_000);
  let policy: RecordingPolicy;
  let broken = false;
  const fx = usePostfixDoor('sluice-policy-pf-', async ({ locks }) => {
    const engine = await postfixTestEngine();
    policy = {
      calls: engine.calls,
      needs: engine.needs,
      async evaluate(stage, tx) {
        if (broken) throw new Error('simulated engine failure');
        return await engine.evaluate(stage, tx);
      },
    };
    const port = await freePort();
    const door = createPolicyDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port } }, doorDeps({ policy, locks }));
    return { door, postfix: { snippets: ['policy'], ports: { 10029: port }, main: { smtpd_policy_service_try_limit: '1' } } };
  });

  const send = (o: { from?: string; to: string | string[]; body?: string }) => swaks({ server: fx.pf.host, port: fx.pf.smtpPort, helo: 'client.example', ...o });

  it('passes clean mail with DUNNO and the rules see the real client, HELO and envelope', async () => {
    policy.calls.length = 0;
    const r = await send({ to: 'ok@example.net' });
    assert.equal(r.code, 0, r.transcript);
    await fx.pf.sink!.waitForMessages(1);
    const rcpt = policy.calls.find((c) => c.stage === 'rcpt')!;
    assert.equal(rcpt.tx.session.client.ip, '127.0.0.1');
    assert.equal(rcpt.tx.session.helo, 'client.example');
    assert.equal(rcpt.tx.envelope.rcpt, 'ok@example.net');
    // The END-OF-MESSAGE request brought the data and eom stages with the real size.
    const eom = policy.calls.find((c) => c.stage === 'eom')!;
    assert.ok(eom.tx.message.size > 100, String(eom.tx.message.size));
    assert.deepEqual(policy.calls.map((c) => c.stage), ['connect', 'helo', 'mail', 'rcpt', 'data', 'eom']);
  });

  it('rejects one recipient with the rule\'s code and text, delivers to the other', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: ['spamtrap@example.net', 'friend@example.net'] });
    assert.equal(r.code, 0, r.transcript);
    assert.ok(r.serverLines.includes('550 5.7.1 <spamtrap@example.net>: Recipient address rejected: Trap address'), r.serverLines.join('\n'));
    const msgs = await fx.pf.sink!.waitForMessages(before + 1);
    assert.deepEqual(msgs[msgs.length - 1]!.recipients, ['friend@example.net']);
  });

  it('defers with the rule\'s 4xx reply (decided at the mail stage)', async () => {
    const r = await send({ from: 'slow@example.org', to: 'x@example.net' });
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('451 4.7.1 <x@example.net>: Recipient address rejected: Sender on probation, try later'), r.serverLines.join('\n'));
  });

  it('PREPENDs a header that arrives in the delivered message', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: 'tag@example.net' });
    assert.equal(r.code, 0, r.transcript);
    const msgs = await fx.pf.sink!.waitForMessages(before + 1);
    const m = msgs[msgs.length - 1]!;
    assert.equal(m.headers[0]![0], 'X-Sluice-Tag', JSON.stringify(m.headers));
    assert.equal(m.headers[0]![1], 'client 127.0.0.1 via policy');
  });

  it('HOLDs a quarantined message in Postfix\'s hold queue', async () => {
    const r = await send({ to: 'hold@example.net' });
    assert.equal(r.code, 0, r.transcript);
    const q = await fx.pf.waitForQueue((q) => q.some((e) => e.queue_name === 'hold'));
    assert.equal(q.find((e) => e.queue_name === 'hold')!.recipients[0]!.address, 'hold@example.net');
    await fx.pf.waitForLog(/: hold: RCPT from [^\n]*: <hold@example\.net>: Recipient address held for review/);
  });

  it('rejects at END-OF-MESSAGE on the real size', async () => {
    const r = await send({ from: 'big@example.org', to: 'big@example.net', body: 'x'.repeat(70).concat('\n').repeat(100) });
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.some((l) => l === '552 5.3.4 Too big for policy' || /^552 5\.3\.4 .*Too big for policy$/.test(l)), r.serverLines.join('\n'));
  });

  it('when the door fails Postfix applies its default action (tempfail), nothing passes unjudged', async () => {
    broken = true;
    try {
      const r = await send({ to: 'ok2@example.net' });
      assert.notEqual(r.code, 0);
      assert.ok(r.serverLines.some((l) => /^451 4\.3\.5 .*Server configuration problem/.test(l)), r.serverLines.join('\n'));
    } finally {
      broken = false;
    }
    // and it recovers on the next connection
    const r2 = await send({ to: 'ok3@example.net' });
    assert.equal(r2.code, 0, r2.transcript);
  });
});
