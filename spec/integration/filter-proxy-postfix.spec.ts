/**
 * Real Postfix before-queue proxy (conf/postfix/proxy.master.cf: smtpd_proxy_filter): the SMTP client waits while
 * the filter door judges the message, and sees the door's (or the next hop's) answer directly.
 *   swaks → Postfix smtpd (public) → filter door → re-injection smtpd (10026) → smtp-sink
 */
import assert from 'node:assert/strict';
import { createFilterDoor } from '../../lib/milter/filter-door.js';
import { freePort } from '../helpers/ports.js';
import { usePostfixDoor } from '../helpers/postfix-door-fixture.js';
import { doorDeps } from '../helpers/postfix-door-deps.js';
import { postfixTestEngine, type RecordingPolicy } from '../helpers/postfix-rules.js';
import { swaks } from '../helpers/swaks.js';

describe('filter door as Postfix before-queue smtpd_proxy_filter', function () {
  this.timeout(60_000);
  let policy: RecordingPolicy;
  const fx = usePostfixDoor('sluice-proxy-pf-', async ({ locks }) => {
    policy = await postfixTestEngine();
    const doorPort = await freePort();
    const reinject = await freePort();
    const door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port: doorPort }, nextHop: { host: '127.0.0.1', port: reinject } }, doorDeps({ policy, locks }));
    return { door, postfix: { snippets: ['proxy'], ports: { 10028: doorPort, 10026: reinject } } };
  });

  const send = (o: { to: string | string[]; headers?: Array<[string, string]>; source?: string }) =>
    swaks({ server: fx.pf.host, port: fx.pf.smtpPort, helo: 'client.example', ...o, extra: ['--local-interface', o.source ?? '127.0.0.2'] });

  it('the client gets the next hop\'s queue id only after the message was judged and re-injected', async () => {
    policy.calls.length = 0;
    const r = await send({ to: 'alice@example.net', headers: [['Subject', 'hello']] });
    assert.equal(r.code, 0, r.transcript);
    const queued = r.serverLines.find((l) => /^250 2\.0\.0 Ok: queued as [0-9A-F]+$/.test(l));
    assert.ok(queued, r.serverLines.join('\n'));
    const [m] = await fx.pf.sink!.waitForMessages(1);
    assert.deepEqual(m!.headers.find(([n]) => n === 'X-Sluice-Client'), ['X-Sluice-Client', '127.0.0.2 helo=client.example']);
    // The queue id the client saw is the re-injection smtpd's: that is the copy that was delivered.
    const qid = queued.split(' ').pop()!;
    await fx.pf.waitForLog(new RegExp(`${qid}: to=<alice@example\\.net>.*status=sent`));
    const connect = policy.calls.find((c) => c.stage === 'connect')!;
    assert.equal(connect.tx.session.client.ip, '127.0.0.2');
    assert.equal(connect.tx.session.helo, 'client.example');
  });

  it('a reject rule answers the SMTP client directly (at MAIL for the client address)', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: 'bob@example.net', source: '127.0.0.3' });
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('554 5.7.1 Client 127.0.0.3 not welcome'), r.serverLines.join('\n'));
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(fx.pf.sink!.messages().length, before);
  });

  it('a content reject answers the final dot; nothing is queued anywhere', async () => {
    const before = fx.pf.sink!.messages().length;
    const r = await send({ to: 'carol@example.net', headers: [['Subject', 'VIAGRA now']] });
    assert.notEqual(r.code, 0);
    assert.ok(r.serverLines.includes('550 5.7.1 Spam content'), r.serverLines.join('\n'));
    assert.deepEqual(await fx.pf.queue(), []);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(fx.pf.sink!.messages().length, before);
  });
});
