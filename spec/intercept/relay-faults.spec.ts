/**
 * Upstream faults and odd peers behind the intercept door: multi-line and malformed replies, unsolicited 421,
 * reply timeouts, a full pipeline FIFO, takeover budget and timeout, IPv6. Real rules; a fault-injecting upstream.
 */
import assert from 'node:assert/strict';
import { startFaultUpstream, type FaultScript, type FaultUpstream } from '../helpers/fault-upstream.js';
import { realPolicy, startInterceptDoor, until, type InterceptHarness } from '../helpers/intercept-harness.js';
import { rawClient, type RawClient } from '../helpers/smtp-raw-client.js';
import { greet, openData, useRelayFixture } from '../helpers/relay-fixture.js';
import type { Limits } from '../../lib/core/limits.js';
import { createInterceptDoor } from '../../lib/intercept/intercept-door.js';
import { doorDeps, lockStoreIn } from '../helpers/postfix-door-deps.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { freePort } from '../helpers/ports.js';

const MAIL_REJECT = 'rule spam at mail: sender ~ /^spam@/ => reject 550 5.7.1 "Sender refused"\n';

describe('intercept relay session: upstream faults and odd peers', function () {
  this.timeout(15000);
  const fx = useRelayFixture();
  let up: FaultUpstream | undefined;
  let h: InterceptHarness | undefined;

  async function setup(script: FaultScript = {}, limits?: Partial<Limits>, rules = MAIL_REJECT): Promise<RawClient> {
    up = await fx.upstream(script);
    h = fx.door(await startInterceptDoor({ upstreamPort: up.port, policy: (locks) => realPolicy(rules, locks), ...(limits ? { limits } : {}) }));
    return fx.client(h.port);
  }

  it('relays multi-line replies and a multi-line greeting byte-for-byte', async () => {
    const c = await setup({ greeting: '220-fault.test first\r\n220-second line\r\n220 ready\r\n', replies: { MAIL: '250-2.1.0 sender\r\n250 2.1.0 ok too\r\n' } });
    assert.equal(await c.reply(), '220-fault.test first\r\n220-second line\r\n220 ready\r\n');
    await c.cmd('EHLO client.test');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '250-2.1.0 sender\r\n250 2.1.0 ok too\r\n');
  });

  it('a malformed upstream reply: 451 for the command, then takeover', async () => {
    const c = await setup({ replies: { MAIL: 'garbage without a code\r\n' } });
    await greet(c);
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.5.0 Next hop protocol error, try again later\r\n');
  });

  it('an upstream that closes mid-session: outstanding commands get 451, then takeover', async () => {
    const c = await setup({ closeAt: 'RCPT' });
    await greet(c);
    await c.cmd('MAIL FROM:<a@b.example>');
    assert.equal(await c.cmd('RCPT TO:<c@d.example>'), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
    assert.equal(await c.cmd('RCPT TO:<c@d.example>'), '503 5.5.1 Protocol error\r\n');
    assert.equal(await c.cmd('QUIT'), '221 2.0.0 sluice.test Signing off\r\n');
  });

  it('an upstream that does not answer within commandTimeout: 451 4.4.2, then takeover', async () => {
    const c = await setup({ delays: { MAIL: 5000 } }, { commandTimeout: 300 });
    await greet(c);
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>', 3000), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.4.2 Next hop timed out, try again later\r\n');
  });

  it('a silent upstream (no greeting within connectTimeout): our own 220, then 451 at MAIL', async () => {
    const c = await setup({ silent: true }, { connectTimeout: 300 });
    assert.equal(await c.reply(3000), '220 sluice.test ESMTP\r\n');
    await c.cmd('EHLO client.test');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.4.2 Next hop timed out, try again later\r\n');
  });

  it('a full pipeline FIFO holds the client (backpressure) and answers every command in order', async () => {
    const c = await setup({ delays: { RCPT: 20 } }, { pipelineDepth: 3 });
    await greet(c);
    let batch = 'MAIL FROM:<a@b.example>\r\n';
    for (let i = 0; i < 20; i++) batch += `RCPT TO:<r${i}@d.example>\r\n`;
    c.write(batch + 'NOOP\r\n');
    const replies: string[] = [];
    for (let i = 0; i < 22; i++) replies.push(await c.reply());
    assert.deepEqual(replies, Array.from({ length: 22 }, () => '250 2.0.0 Ok\r\n'));
    assert.equal(up!.connections[0]!.commands.filter((l) => l.startsWith('RCPT')).length, 20);
  });

  it('takeover command budget: 421 and close after takeoverCommands', async () => {
    const c = await setup({}, { takeoverCommands: 3 });
    await greet(c);
    await c.cmd('MAIL FROM:<spam@b.example>');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('NOOP'), '421 4.7.0 Too many commands, closing connection\r\n');
    await c.closed;
  });

  it('takeover timeout: 421 4.4.2 after takeoverTimeout, even while the client keeps talking', async () => {
    const c = await setup({}, { takeoverTimeout: 400 });
    await greet(c);
    await c.cmd('MAIL FROM:<spam@b.example>');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.reply(2000), '421 4.4.2 sluice.test SMTP session timeout, closing connection\r\n');
    await c.closed;
  });

  it('an unsolicited 421 from the upstream reaches an idle client, then takeover', async () => {
    const c = await setup({ replies: { NOOP: '421 4.4.2 fault.test timeout\r\n' } });
    await greet(c);
    assert.equal(await c.cmd('NOOP'), '421 4.4.2 fault.test timeout\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
  });

  it('too many malformed commands exhaust the error budget: 421', async () => {
    const c = await setup({}, { errorBudget: 2 });
    await c.reply();
    // No EHLO yet, so no ENHANCEDSTATUSCODES advertised: plain codes.
    assert.equal(await c.cmd('!!!'), '500 Syntax error, command unrecognized\r\n');
    assert.equal(await c.cmd('MAIL <x>'), '501 Syntax error in parameters or arguments\r\n');
    assert.equal(await c.cmd('???'), '421 Too many errors, closing connection\r\n');
    await c.closed;
  });

  it('IPv6: client and upstream on ::1', async () => {
    up = await fx.upstream({}, '::1');
    const dir = makeTempDir('sluice-icpt6-');
    const locks = lockStoreIn(dir.path);
    const port = await freePort('::1');
    const door = createInterceptDoor(
      { listeners: [{ listen: { ip: '::1', port }, mode: 'fixed', upstream: { ip: '::1', port: up.port } }] },
      doorDeps({ policy: realPolicy('rule v6 at mail: client.ip == ::1 => reject 550 5.7.1 "v6 seen as {client.ip}"\n', locks), locks }),
    );
    await door.start();
    let c: RawClient | undefined;
    try {
      c = await rawClient(port, '::1');
      assert.equal(await c.reply(), '220 fault.test ESMTP ready\r\n');
      await c.cmd('EHLO client.test');
      assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '550 5.7.1 v6 seen as ::1\r\n');
    } finally {
      c?.close();
      await door.stop(200);
      await locks.close();
      dir.remove();
    }
  });

  it('an upstream reset while the client is paused for it (large message, slow upstream): 451 at the end of data, not a hang', async () => {
    const c = await setup({ slowData: { everyBytes: 256 * 1024, ms: 100 }, resetAfterDataBytes: 2 * 1024 * 1024 }, { dataTimeout: 60_000 });
    await openData(c);
    const line = 'a line of a large message sent faster than the next hop reads it, about eighty bytes\r\n';
    c.write(line.repeat(Math.ceil((16 * 1024 * 1024) / line.length)));
    assert.equal(await c.cmd('.', 15_000), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
  });

  it('no leaked sessions after every fault above (door count back to 0)', async () => {
    const c = await setup({ resetAfterDataBytes: 10 });
    await openData(c);
    assert.equal(await c.cmd('0123456789abcdef\r\n.'), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
    c.close();
    await until(() => h!.door.activeSessions === 0);
  });
});

describe('intercept relay session: discard and quarantine at eom', function () {
  this.timeout(10000);
  for (const [action, expected] of [
    ['discard', '250 2.0.0 Ok\r\n'],
    ['quarantine "held"', '550 5.7.1 Message refused by content policy\r\n'],
  ] as const) {
    it(`${action}: the upstream never gets the final dot; the client gets ${JSON.stringify(expected.trim())}`, async () => {
      const up = await startFaultUpstream();
      const h = await startInterceptDoor({ upstreamPort: up.port, policy: (locks) => realPolicy(`rule x at eom: header("Subject") == "drop" => ${action}\n`, locks) });
      const c = await rawClient(h.port);
      try {
        await openData(c);
        assert.equal(await c.cmd('Subject: drop\r\n\r\nbody\r\n.'), expected);
        await up.waitClosed(1);
        assert.deepEqual(up.connections[0]!.messages, []);
      } finally {
        c.close();
        await h.stop();
        await up.close();
      }
    });
  }
});

describe('intercept relay session: hostile clients', function () {
  this.timeout(15000);
  it('a client that never reads its replies is not read either (bounded buffers), and logs keep client text in fields', async () => {
    const up = await startFaultUpstream();
    const h = await startInterceptDoor({ upstreamPort: up.port, policy: (locks) => realPolicy('rule x at helo: helo == "never" => reject\n', locks) });
    const c = await rawClient(h.port);
    try {
      await c.reply();
      await c.cmd('EHLO %n%s%x.test');
      c.socket.pause();
      // 2,000,000 NOOPs (12 MB) whose 28 MB of replies are more than the kernel's socket buffers can hold.
      const total = 2_000_000;
      const noop = Buffer.from('NOOP\r\n'.repeat(100_000));
      for (let i = 0; i < total / 100_000; i++) c.socket.write(noop);
      const count = (): number => up.connections[0]!.commands.length;
      // Wait until forwarding stops (the kernel buffers are full and sluice stopped reading the client).
      let last = -1;
      for (let i = 0; i < 40 && count() !== last; i++) {
        last = count();
        await new Promise((r) => setTimeout(r, 250));
      }
      const forwarded = count();
      assert.ok(forwarded < total / 2, `${forwarded} of ${total} NOOPs were forwarded although the client read nothing`);
      assert.equal(count(), last, 'forwarding stopped');
      const helo = h.events('EHLO')[0]!;
      assert.equal(helo['helo'], '%n%s%x.test');
      assert.ok(h.logger.records.every((r) => !(r.msg ?? '').includes('%n')), 'client text never in a log message');
    } finally {
      c.close();
      await h.stop();
      await up.close();
    }
  });
  it('a session the door ends while it holds the client paused (read-ahead full) ends with the client\'s FIN, not 2 s later', async () => {
    const up = await startFaultUpstream();
    const h = await startInterceptDoor({ upstreamPort: up.port, policy: (locks) => realPolicy('rule block at connect: => tempfail 421 4.7.0 "go away"\n', locks) });
    const c = await rawClient(h.port);
    try {
      // An earlytalker's flood, more than the 64 KB the door reads ahead: the door stops reading it.
      c.write('NOOP\r\n'.repeat(30_000));
      assert.equal(await c.reply(), '421 go away\r\n');
      await c.closed;
      const t0 = Date.now();
      await until(() => h.door.activeSessions === 0, 5000, 'the door to end the session');
      assert.ok(Date.now() - t0 < 1000, `the session ended ${Date.now() - t0} ms after the client had gone`);
    } finally {
      c.close();
      await h.stop();
      await up.close();
    }
  });
});

describe('intercept relay session: early bytes when there is no upstream', function () {
  it('commands sent before our own greeting are answered by the takeover, in order', async () => {
    const dead = await startFaultUpstream();
    const port = dead.port;
    await dead.close();
    const h = await startInterceptDoor({ upstreamPort: port, policy: (locks) => realPolicy('rule x at helo: helo == "never" => reject\n', locks) });
    const c = await rawClient(h.port);
    try {
      c.write('EHLO eager.test\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n');
      assert.equal(await c.reply(), '220 sluice.test ESMTP\r\n');
      assert.match(await c.reply(), /^250-sluice\.test SMTP proxy, hello\r\n/);
      assert.equal(await c.reply(), '451 4.4.1 Next hop unreachable, try again later\r\n');
      assert.equal(await c.reply(), '221 2.0.0 sluice.test Signing off\r\n');
      await c.closed;
    } finally {
      c.close();
      await h.stop();
    }
  });
});

describe('intercept relay session: takeover stays bounded', function () {
  this.timeout(10000);
  it('a flood of commands during a takeover that still waits for an upstream reply: replies in order, one 421, then close', async () => {
    const up = await startFaultUpstream({ delays: { NOOP: 300 } });
    const h = await startInterceptDoor({ upstreamPort: up.port, policy: (locks) => realPolicy(MAIL_REJECT, locks), limits: { takeoverCommands: 5 } });
    const c = await rawClient(h.port);
    try {
      await greet(c);
      // NOOP goes upstream (slow), then MAIL is refused: takeover while the NOOP reply is outstanding.
      c.write('NOOP\r\nMAIL FROM:<spam@x.example>\r\n' + 'RSET\r\n'.repeat(5000));
      await c.closed;
      const text = c.received();
      assert.equal((text.match(/^421 /gm) ?? []).length, 1, text.slice(-300));
      assert.ok((text.match(/^250 2\.0\.0 Ok\r\n/gm) ?? []).length <= 6);
      assert.match(text, /^250 2\.0\.0 Ok\r\n550 5\.7\.1 Sender refused\r\n/m);
    } finally {
      c.close();
      await h.stop();
      await up.close();
    }
  });
});
