import assert from 'node:assert/strict';
import { requirePeer } from '../helpers/ci-guard.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';

describe('spec/helpers/postfix.ts: private Postfix instance', function () {
  this.timeout(60_000);
  let a: PostfixInstance | undefined;
  let b: PostfixInstance | undefined;

  before(function () {
    requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('runs two instances side by side that relay to their own smtp-sink', async () => {
    [a, b] = await Promise.all([startPostfix(), startPostfix()]);
    assert.notEqual(a.smtpPort, b.smtpPort);
    assert.notEqual(a.dir, b.dir);
    const r = await swaks({ server: a.host, port: a.smtpPort, from: 'alice@example.org', to: 'bob@example.net', headers: [['X-Test', 'harness-a']] });
    assert.equal(r.code, 0, r.transcript);
    assert.ok(r.serverLines.some((l) => /^250 2\.0\.0 Ok: queued as [0-9A-F]+/.test(l)), r.transcript);
    const [m] = await a.sink!.waitForMessages(1);
    assert.equal(m!.sender, 'alice@example.org');
    assert.deepEqual(m!.recipients, ['bob@example.net']);
    assert.ok(m!.headers.some(([n, v]) => n === 'X-Test' && v === 'harness-a'));
    assert.ok(m!.headers.some(([n, v]) => n === 'Received' && v.includes(`by mx`)), JSON.stringify(m!.headers));
    await a.waitForQueueEmpty();
    assert.match(a.log(), /status=sent/);
    assert.equal(b.sink!.messages().length, 0);
  });

  it('shows undeliverable mail as deferred in postqueue -j and can stop cleanly', async () => {
    await b!.sink!.stop(); // next hop gone
    const r = await swaks({ server: b!.host, port: b!.smtpPort, to: 'carol@example.net' });
    assert.equal(r.code, 0, r.transcript);
    const q = await b!.waitForQueue((q) => q.length === 1 && q[0]!.queue_name === 'deferred');
    assert.equal(q[0]!.recipients[0]!.address, 'carol@example.net');
    assert.match(q[0]!.recipients[0]!.delay_reason ?? '', /connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: Connection refused/);
  });
});
