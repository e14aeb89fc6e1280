/**
 * The relay session against a fault-injecting upstream and a raw socket client: exact replies on the wire,
 * exact bytes the upstream received. Policy is scripted here (fault injection and stage observation);
 * spec/integration/intercept-*.spec.ts use the real rule engine with real peers.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { scriptedPolicy, type Decide } from '../helpers/postfix-door-deps.js';
import { startFaultUpstream, type FaultScript, type FaultUpstream } from '../helpers/fault-upstream.js';
import { realPolicy, startInterceptDoor, until, type InterceptHarness } from '../helpers/intercept-harness.js';
import { rawClient, type RawClient } from '../helpers/smtp-raw-client.js';
import { greet, openData, useRelayFixture } from '../helpers/relay-fixture.js';
import type { Limits } from '../../lib/core/limits.js';
import type { InterceptDoorOptions } from '../../lib/intercept/intercept-door.js';
import { lockKey } from '../../lib/policy/lock-store.js';


describe('intercept relay session (fault upstream, raw client)', function () {
  this.timeout(15000);
  const fx = useRelayFixture();
  let h: InterceptHarness | undefined;

  async function setup(opts: { script?: FaultScript; decide?: Decide; rules?: string; limits?: Partial<Limits>; options?: Partial<InterceptDoorOptions>; upstreamPort?: number; headers?: boolean } = {}): Promise<{ up: FaultUpstream; h: InterceptHarness; policy: ReturnType<typeof scriptedPolicy> }> {
    const up = await fx.upstream(opts.script);
    const policy = scriptedPolicy(opts.decide ?? (() => undefined), { headers: opts.headers ?? false });
    const rules = opts.rules;
    h = fx.door(await startInterceptDoor({ upstreamPort: opts.upstreamPort ?? up.port, policy: rules !== undefined ? (locks) => realPolicy(rules, locks) : policy, ...(opts.limits ? { limits: opts.limits } : {}), ...(opts.options ? { options: opts.options } : {}) }));
    return { up, h, policy };
  }

  function client(): Promise<RawClient> {
    return fx.client(h!.port);
  }

  it('relays greeting and replies byte-for-byte, edits EHLO, writes the trace header first, 250 from the upstream', async () => {
    const { up, policy } = await setup({
      script: { capabilities: ['PIPELINING', 'SIZE 10240000', 'CHUNKING', 'XCLIENT NAME ADDR', 'ENHANCEDSTATUSCODES', 'BINARYMIME'] },
      decide: (stage, tx) => (stage === 'data' ? { mutations: [{ kind: 'add', name: 'X-NAT-Received', value: `from [${tx.session.client.ip}]:${tx.session.client.port}\nby sluice.test` }] } : undefined),
    });
    const c = await client();
    assert.equal(await c.reply(), '220 fault.test ESMTP ready\r\n');
    assert.equal(await c.cmd('EHLO client.test'), '250-fault.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 ENHANCEDSTATUSCODES\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@example.org> SIZE=100'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>\r\n');
    assert.equal(await c.cmd('Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.'), '250 2.0.0 Ok: queued\r\n');
    assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye\r\n');
    await c.closed;
    const conn = up.connections[0]!;
    assert.match(conn.messages[0]!, /^X-NAT-Received: from \[127\.0\.0\.1\]:\d+\r\n\tby sluice\.test\r\nSubject: hi\r\n\r\n\.leading dot\r\nbody\r\n$/);
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo', 'mail', 'rcpt', 'data', 'header', 'eoh', 'eom']);
    const eom = policy.calls.at(-1)!.tx;
    assert.deepEqual(eom.envelope.rcpts, ['b@example.net']);
    assert.equal(eom.message.size, 'Subject: hi\r\n\r\n.leading dot\r\nbody\r\n'.length);
    await until(() => h!.events('CLOSE').length === 1);
    assert.equal(h!.events('CLOSE')[0]!['transactions'], 1);
  });

  it('after QUIT and the upstream 221, closes both sockets itself: a client that stays half-open is not waited for', async () => {
    const { up } = await setup();
    // allowHalfOpen: this client never closes its side on its own.
    const s = connect({ host: '127.0.0.1', port: h!.port, allowHalfOpen: true });
    s.on('error', () => undefined);
    let got = '';
    let ended = false;
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('end', () => (ended = true));
    await until(() => got.includes('220 '));
    s.write('QUIT\r\n');
    const t0 = Date.now();
    await until(() => ended && h!.events('CLOSE').length === 1);
    // The session's own fallback for a client that lingers is 2 s; it must not be what ended this one.
    assert.ok(Date.now() - t0 < 1500, `closed after ${Date.now() - t0} ms`);
    assert.ok(!s.destroyed, 'the client still has its socket open');
    assert.match(got, /221 [^\r]*\r\n$/);
    assert.equal(h!.events('CLOSE')[0]!['by'], 'quit');
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.commands, ['QUIT']);
    s.destroy();
  });

  it('keeps PIPELINING: replies in command order, a refused RCPT answered locally and never forwarded', async () => {
    const { up } = await setup({ rules: 'rule bad at rcpt: rcpt == "bad@example.net" => reject 550 5.7.1 "No such user here"' });
    const c = await client();
    await greet(c);
    c.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<one@example.net>\r\nRCPT TO:<bad@example.net>\r\nRCPT TO:<two@example.net>\r\nDATA\r\n');
    const replies = [await c.reply(), await c.reply(), await c.reply(), await c.reply(), await c.reply()];
    assert.deepEqual(replies, ['250 2.0.0 Ok\r\n', '250 2.0.0 Ok\r\n', '550 5.7.1 No such user here\r\n', '250 2.0.0 Ok\r\n', '354 End data with <CR><LF>.<CR><LF>\r\n']);
    assert.equal(await c.cmd('x\r\n.'), '250 2.0.0 Ok: queued\r\n');
    assert.ok(!up.connections[0]!.raw.includes('bad@example.net'));
  });

  it('header rules run once per header, each seeing that header as header.name/header.value', async () => {
    const { up } = await setup({ rules: 'rule xm at header: header.name == "X-Mailer" and header.value ~ /^BadMailer/ => reject 550 5.7.1 "Mailer {header.value} refused"' });
    const c = await client();
    await openData(c);
    assert.equal(await c.cmd('X-Mailer: BadMailer 1.0\r\nSubject: hi\r\n\r\nbody\r\n.'), '550 5.7.1 Mailer BadMailer 1.0 refused\r\n');
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.messages, []);
  });

  it('the data rule sees every pipelined recipient the upstream accepted', async () => {
    await setup({ script: { delays: { RCPT: 30 } }, rules: 'rule two at data: rcpts.count > 2 => reject 550 5.5.3 "Too many recipients for {rcpts.count}"' });
    const c = await client();
    await greet(c);
    c.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<r1@example.net>\r\nRCPT TO:<r2@example.net>\r\nRCPT TO:<r3@example.net>\r\nDATA\r\n');
    const replies = [await c.reply(), await c.reply(), await c.reply(), await c.reply(), await c.reply()];
    assert.equal(replies[4], '550 5.5.3 Too many recipients for 3\r\n');
  });

  it('takes the session over after a MAIL reject: QUIT upstream, then 250/503/451/502/221', async () => {
    const { up } = await setup({ rules: 'rule spam at mail: sender ~ /^spam@/ => reject 550 5.7.1 "Sender refused"' });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('MAIL FROM:<spam@example.org>'), '550 5.7.1 Sender refused\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('RCPT TO:<x@y>'), '503 5.5.1 Protocol error\r\n');
    assert.equal(await c.cmd('MAIL FROM:<again@example.org>'), '451 4.3.2 Session refused by policy\r\n');
    assert.equal(await c.cmd('VRFY x'), '502 5.5.2 Command not implemented\r\n');
    assert.equal(await c.cmd('QUIT'), '221 2.0.0 sluice.test Signing off\r\n');
    await c.closed;
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.commands, ['EHLO client.test', 'QUIT']);
  });

  it('uses enhanced status codes in its own replies only when the upstream advertised them', async () => {
    await setup({ script: { capabilities: ['PIPELINING'] }, rules: 'rule spam at mail: sender ~ /^spam@/ => reject 550 5.7.1 "Sender refused"' });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('MAIL FROM:<spam@example.org>'), '550 Sender refused\r\n');
    assert.equal(await c.cmd('RCPT TO:<x@y>'), '503 Protocol error\r\n');
  });

  it('refuses XCLIENT, XFORWARD and BDAT without forwarding them; a 100 KB line gets 500 5.5.2', async () => {
    const { up } = await setup();
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('XCLIENT ADDR=10.0.0.1'), '502 5.5.1 Command not permitted\r\n');
    assert.equal(await c.cmd('XFORWARD ADDR=10.0.0.1'), '502 5.5.1 Command not permitted\r\n');
    assert.equal(await c.cmd('BDAT 10 LAST'), '502 5.5.1 Command not implemented\r\n');
    assert.equal(await c.cmd('MAIL FROM:<' + 'a'.repeat(100_000) + '@x>'), '500 5.5.2 Line too long\r\n');
    assert.equal(await c.cmd('NOOP\0\0\0'), '500 5.5.2 Syntax error: bare CR or NUL in command line\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    const raw = up.connections[0]!.raw;
    assert.ok(!/XCLIENT|XFORWARD|BDAT|aaaa|\0/.test(raw), raw);
  });

  it('a CR or NUL inside a command line: 500 5.5.2, never forwarded (a server must not split what we checked)', async () => {
    const { up } = await setup();
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('NOOP x\rRCPT TO:<victim@d.example>'), '500 5.5.2 Syntax error: bare CR or NUL in command line\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>\0 SIZE=1'), '500 5.5.2 Syntax error: bare CR or NUL in command line\r\n');
    assert.equal(await c.cmd('NOOP\r'), '500 5.5.2 Syntax error: bare CR or NUL in command line\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.deepEqual(up!.connections[0]!.commands, ['EHLO client.test', 'NOOP']);
    assert.ok(!/victim|\0|\r(?!\n)/.test(up!.connections[0]!.raw), up!.connections[0]!.raw);
  });

  it('handles commands split into single-byte TCP segments', async () => {
    await setup();
    const c = await client();
    await c.reply();
    const text = 'EHLO client.test\r\nMAIL FROM:<a@b.example>\r\n';
    const replyP = c.reply();
    for (const ch of text) {
      c.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    assert.match(await replyP, /^250-fault\.test/);
    assert.equal(await c.reply(), '250 2.0.0 Ok\r\n');
  });

  for (const [name, probe] of [
    ['\\n.\\n', 'x\n.\nMAIL FROM:<smuggled@evil>\r\n'],
    ['\\r\\n.\\n', 'x\r\n.\nMAIL FROM:<smuggled@evil>\r\n'],
    ['\\n.\\r\\n', 'x\n.\r\nMAIL FROM:<smuggled@evil>\r\n'],
    ['bare CR', 'x\r.\rMAIL FROM:<smuggled@evil>\r\n'],
  ] as const) {
    it(`smuggling probe ${name}: 550 5.6.0 at the real end, the upstream never sees the smuggled command or a dot`, async () => {
      const { up } = await setup();
      const c = await client();
      await greet(c);
      await c.cmd('MAIL FROM:<a@b.example>');
      await c.cmd('RCPT TO:<c@d.example>');
      assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>\r\n');
      assert.equal(await c.cmd('Subject: s\r\n\r\n' + probe + 'more\r\n.'), '550 5.6.0 Message contains bare CR or LF characters; lines must end in CRLF\r\n');
      await up.waitClosed(1);
      const conn = up.connections[0]!;
      assert.deepEqual(conn.messages, []);
      assert.ok(!conn.raw.includes('smuggled'), 'the smuggled command never reached the upstream');
      assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.3.2 Previous message was not relayed; please reconnect\r\n');
    });
  }

  it('normalise mode: bare LF becomes CRLF and a smuggled "." line stays message content', async () => {
    const { up } = await setup({ options: { bareLf: 'normalise' } });
    const c = await client();
    await openData(c);
    assert.equal(await c.cmd('Subject: s\n\nx\n.\nMAIL FROM:<smuggled@evil>\r\n.'), '250 2.0.0 Ok: queued\r\n');
    assert.equal(up.connections[0]!.messages[0], 'Subject: s\r\n\r\nx\r\n.\r\nMAIL FROM:<smuggled@evil>\r\n');
    assert.ok(!up.connections[0]!.commands.some((l) => l.includes('smuggled')));
  });

  it('eom reject: the upstream never receives the final dot; the client gets the rule reply', async () => {
    const { up } = await setup({ rules: 'rule bad at eom: header("Subject") == "bad" => reject 550 5.7.1 "Message refused"' });
    const c = await client();
    await openData(c);
    c.write('Subject: bad\r\n\r\nbody streamed before the end\r\n');
    await until(() => up.connections[0]!.partial.includes('body streamed before the end'), 5000, 'the body to be streamed upstream before the end of data');
    assert.equal(await c.cmd('last line\r\n.'), '550 5.7.1 Message refused\r\n');
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.messages, []);
    assert.ok(!up.connections[0]!.raw.includes('\r\n.\r\n'), 'the final dot never reached the upstream');
  });

  it('size limit: 552 5.3.4 after the end of data, upstream dropped before any dot, long lines counted', async () => {
    const { up } = await setup({ limits: { messageSize: 5000 } });
    const c = await client();
    await openData(c);
    c.write('Subject: big\r\n\r\n' + 'y'.repeat(20_000) + '\r\nMAIL FROM:<not-a-command@x>\r\n');
    assert.equal(await c.cmd('.'), '552 5.3.4 Message size exceeds fixed maximum message size\r\n');
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.messages, []);
    assert.ok(!up.connections[0]!.raw.includes('not-a-command'));
  });

  it('a declared SIZE over the limit is refused at MAIL (552 5.3.4), not forwarded, and the session goes on', async () => {
    const { up } = await setup({ limits: { messageSize: 5000 } });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('MAIL FROM:<a@b.example> SIZE=5001'), '552 5.3.4 Message size exceeds fixed maximum message size\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example> SIZE=5000'), '250 2.0.0 Ok\r\n');
    assert.deepEqual(up.connections[0]!.commands.filter((l) => l.startsWith('MAIL')), ['MAIL FROM:<a@b.example> SIZE=5000']);
  });

  it('upstream reset mid-DATA: the client gets 451 at its end of data, never 250', async () => {
    await setup({ script: { resetAfterDataBytes: 1000 } });
    const c = await client();
    await openData(c);
    c.write('Subject: x\r\n\r\n' + 'z'.repeat(5000) + '\r\n');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await c.cmd('.'), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
    assert.equal(await c.cmd('QUIT'), '221 2.0.0 sluice.test Signing off\r\n');
  });

  it('client gone mid-DATA: the upstream is dropped, nothing delivered, the session closes', async () => {
    const { up } = await setup();
    const c = await client();
    await openData(c);
    c.write('Subject: x\r\n\r\npartial\r\n');
    await until(() => (up.connections[0]?.partial ?? '').includes('partial'));
    c.close();
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.messages, []);
    await until(() => h!.door.activeSessions === 0);
  });

  it('upstream unreachable: our own 220, then 451 4.4.1 at MAIL', async () => {
    const dead = await startFaultUpstream();
    const deadPort = dead.port;
    await dead.close();
    await setup({ upstreamPort: deadPort });
    const c = await client();
    assert.equal(await c.reply(), '220 sluice.test ESMTP\r\n');
    assert.match(await c.cmd('EHLO client.test'), /^250-sluice\.test SMTP proxy, hello\r\n.*250 ENHANCEDSTATUSCODES\r\n$/s);
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '451 4.4.1 Next hop unreachable, try again later\r\n');
    assert.equal(await c.cmd('QUIT'), '221 2.0.0 sluice.test Signing off\r\n');
  });

  it('earlytalker: seen by the connect rule, which refuses with its own 554', async () => {
    await setup({ script: { delays: { GREETING: 300 } }, rules: 'rule early at connect: earlytalker => reject 554 5.7.1 "Wait for the greeting"' });
    const c = await client();
    c.write('EHLO eager.test\r\n');
    assert.equal(await c.reply(), '554 Wait for the greeting\r\n');
    assert.equal(await c.reply(), '250 sluice.test SMTP proxy, hello\r\n'.replace('250 ', '250-').replace('hello\r\n', 'hello\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n'));
    await until(() => h!.events('EARLYTALKER').length === 1);
  });

  it('greetDelay holds the greeting so that an early talker is caught by the earlytalker rule', async () => {
    await setup({ options: { greetDelay: 300 }, rules: 'rule early at connect: earlytalker => reject 554 5.7.1 "Wait for the greeting"' });
    const c = await client();
    await new Promise((r) => setTimeout(r, 100));
    c.write('EHLO eager.test\r\n');
    assert.equal(await c.reply(), '554 Wait for the greeting\r\n');
    const patient = await client();
    assert.equal(await patient.reply(), '220 fault.test ESMTP ready\r\n');
  });

  it('a host locked during the transaction gets 451 at the end of data (fresh lock check)', async () => {
    const { up } = await setup();
    const c = await client();
    await openData(c);
    await h!.locks.lock(lockKey('client', '127.0.0.1'), 60_000, 'test', 'manual');
    assert.equal(await c.cmd('hello\r\n.'), '451 4.7.1 Service temporarily refused for your host\r\n');
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.messages, []);
    // The next connection is refused at once, without an upstream connection.
    const c2 = await client();
    assert.equal(await c2.reply(), '554 sluice.test Access denied for your host, try again later\r\n');
    assert.equal(up.connections.length, 1);
  });

  it('STARTTLS forbid: removed from EHLO and 502; relay: opaque after 220', async () => {
    await setup({ script: { capabilities: ['STARTTLS', 'PIPELINING'] }, options: { starttls: 'forbid' } });
    const c = await client();
    await c.reply();
    assert.equal(await c.cmd('EHLO client.test'), '250-fault.test\r\n250 PIPELINING\r\n');
    assert.equal(await c.cmd('STARTTLS'), '502 STARTTLS not available\r\n');
  });

  it('STARTTLS relay: after the upstream 220 the session is an opaque byte relay', async () => {
    const { up } = await setup({ script: { capabilities: ['STARTTLS'], replies: { STARTTLS: '220 2.0.0 Ready to start TLS\r\n' } } });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('STARTTLS'), '220 2.0.0 Ready to start TLS\r\n');
    c.write('\x16\x03\x01 not smtp at all\r\nXCLIENT\r\n');
    await until(() => up.connections[0]!.raw.includes('not smtp at all\r\nXCLIENT'));
    await until(() => h!.events('STARTTLS').length === 1);
    c.close();
    await up.waitClosed(1);
    assert.ok(up.connections[0]!.raw.endsWith('not smtp at all\r\nXCLIENT\r\n'), 'no plaintext QUIT injected into the TLS stream');
  });

  it('AUTH PLAIN and LOGIN: relayed, a 235 records the user for the auth rule and the transaction', async () => {
    const { up, policy } = await setup({ script: { capabilities: ['AUTH PLAIN LOGIN'], auth: true } });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('AUTH PLAIN'), '334 \r\n');
    const resp = Buffer.from('\0alice\0secret').toString('base64');
    assert.equal(await c.cmd(resp), '235 2.7.0 Authentication successful\r\n');
    assert.equal(up.connections[0]!.commands.at(-1), resp);
    const auth = policy.calls.find((x) => x.stage === 'auth');
    assert.deepEqual(auth?.tx.session.auth, { user: 'alice', mechanism: 'PLAIN' });
    await c.cmd('MAIL FROM:<a@b.example>');
    assert.equal(policy.calls.at(-1)!.tx.session.auth?.user, 'alice');
    const c2 = await client();
    await c2.reply();
    await c2.cmd('EHLO client.test');
    assert.equal(await c2.cmd('AUTH LOGIN ' + Buffer.from('bob').toString('base64')), '235 2.7.0 Authentication successful\r\n');
    await until(() => policy.calls.filter((x) => x.stage === 'auth').length === 2);
    assert.equal(policy.calls.filter((x) => x.stage === 'auth')[1]!.tx.session.auth?.user, 'bob');
  });

  it('a SASL line longer than commandLine (but within RFC 4954\'s 12288) is relayed; other long lines are not', async () => {
    const { up } = await setup({ script: { capabilities: ['AUTH PLAIN'], auth: true }, limits: { commandLine: 512 } });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('NOOP ' + 'x'.repeat(600)), '500 Line too long\r\n'); // no ENHANCEDSTATUSCODES offered
    assert.equal(await c.cmd('AUTH PLAIN'), '334 \r\n');
    const token = Buffer.from('\0alice\0' + 'p'.repeat(3000)).toString('base64');
    assert.equal(await c.cmd(token), '235 2.7.0 Authentication successful\r\n');
    assert.equal(up!.connections[0]!.commands.at(-1), token);
  });

  it('a SASL response with a bare CR cancels the exchange upstream ("*"); both sides stay in step', async () => {
    const { up } = await setup({ script: { capabilities: ['AUTH PLAIN', 'ENHANCEDSTATUSCODES'], auth: true } });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('AUTH PLAIN'), '334 \r\n');
    assert.equal(await c.cmd('AGFsaWNl\rAHNlY3JldA=='), '501 5.7.0 Authentication aborted\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.deepEqual(up!.connections[0]!.commands.slice(-3), ['AUTH PLAIN', '*', 'NOOP']);
  });

  it('a SASL response over 12288 octets cancels the exchange upstream; both sides stay in step', async () => {
    const { up } = await setup({ script: { capabilities: ['AUTH PLAIN', 'ENHANCEDSTATUSCODES'], auth: true } });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('AUTH PLAIN'), '334 \r\n');
    assert.equal(await c.cmd('A'.repeat(20_000)), '501 5.7.0 Authentication aborted\r\n');
    assert.equal(await c.cmd('NOOP'), '250 2.0.0 Ok\r\n');
    assert.deepEqual(up!.connections[0]!.commands.slice(-3), ['AUTH PLAIN', '*', 'NOOP']);
  });

  it('an auth rule can refuse an authenticated user: the 235 is replaced by its reply', async () => {
    await setup({ script: { capabilities: ['AUTH PLAIN', 'ENHANCEDSTATUSCODES'], auth: true }, rules: 'rule nope at auth: auth == "mallory" => reject 535 5.7.8 "Not you"' });
    const c = await client();
    await greet(c);
    assert.equal(await c.cmd('AUTH PLAIN ' + Buffer.from('\0mallory\0pw').toString('base64')), '535 5.7.8 Not you\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a@b>'), '451 4.3.2 Session refused by policy\r\n');
  });

  it('over sessionsPerClient: 421 and close', async () => {
    await setup({ limits: { sessionsPerClient: 1 } });
    const c1 = await client();
    assert.equal(await c1.reply(), '220 fault.test ESMTP ready\r\n');
    const c2 = await client();
    assert.equal(await c2.reply(), '421 4.7.0 sluice.test Too many connections, try again later\r\n');
    await c2.closed;
    assert.equal(h!.events('LIMIT').length, 1);
  });

  it('idle timeout: 421 4.4.2 and both connections closed', async () => {
    const { up } = await setup({ limits: { idleTimeout: 300 } });
    const c = await client();
    await c.reply();
    assert.equal(await c.reply(2000), '421 sluice.test Timeout, closing connection\r\n');
    await c.closed;
    await up.waitClosed(1);
  });

  it('DATA pipelined with the message (client does not wait for 354) and commands after the dot', async () => {
    const { up } = await setup();
    const c = await client();
    await greet(c);
    c.write('MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n');
    const r = [await c.reply(), await c.reply(), await c.reply(), await c.reply(), await c.reply()];
    assert.deepEqual(r, ['250 2.0.0 Ok\r\n', '250 2.0.0 Ok\r\n', '354 End data with <CR><LF>.<CR><LF>\r\n', '250 2.0.0 Ok: queued\r\n', '221 2.0.0 Bye\r\n']);
    assert.deepEqual(up.connections[0]!.messages, ['Subject: p\r\n\r\nbody\r\n']);
  });

  it('upstream refuses DATA (451): the client gets 451 and the session resyncs with RSET', async () => {
    const { up } = await setup({ script: { replies: { DATA: '451 4.3.0 Try later\r\n' } } });
    const c = await client();
    await greet(c);
    await c.cmd('MAIL FROM:<a@b.example>');
    await c.cmd('RCPT TO:<c@d.example>');
    assert.equal(await c.cmd('DATA'), '451 4.3.0 Try later\r\n');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('MAIL FROM:<a2@b.example>'), '250 2.0.0 Ok\r\n');
    assert.deepEqual(up.connections[0]!.commands.slice(-2), ['RSET', 'MAIL FROM:<a2@b.example>']);
  });
});

describe('intercept door lifecycle', function () {
  this.timeout(10000);
  it('stop(drainMs) ends sessions still open after the drain with 421 and resolves', async () => {
    const up = await startFaultUpstream();
    const h = await startInterceptDoor({ upstreamPort: up.port, policy: scriptedPolicy(() => undefined) });
    const c = await rawClient(h.port);
    assert.equal(await c.reply(), '220 fault.test ESMTP ready\r\n');
    await c.cmd('EHLO client.test');
    const t0 = Date.now();
    await h.stop();
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(await c.reply(), '421 4.3.2 sluice.test Service shutting down, closing connection\r\n');
    await c.closed;
    await up.waitClosed(1);
    assert.equal(h.door.activeSessions, 0);
    await up.close();
  });
});
