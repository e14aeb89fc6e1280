/**
 * The filter door spoken to with raw SMTP lines (as Postfix's smtp client would), with a real smtp-sink as next hop
 * (and a real Postfix smtpd where XFORWARD must be checked by its receiver). Exact replies are asserted.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Door } from '../../lib/daemon/door.js';
import { createFilterDoor, type FilterDoorOptions } from '../../lib/milter/filter-door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { createScannerSet } from '../../lib/scanners/scanner-set.js';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { doorDeps, lockStoreIn, scriptedPolicy, type Decide, type ScriptedPolicy } from '../helpers/postfix-door-deps.js';
import { smtpSinkAvailable, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { SocketBuffer, type TakeUnit } from '../helpers/socket-buffer.js';
import { startFaultUpstream } from '../helpers/fault-upstream.js';
import type { DoorDeps } from '../../lib/daemon/door.js';

/** One whole SMTP reply (all its lines joined by \n) off the front of the buffer. */
const takeReply: TakeUnit<string> = (buf) => {
  const lines = buf.split('\r\n');
  for (let i = 0; i < lines.length - 1; i++) {
    if (/^\d{3} /.test(lines[i]!) || /^\d{3}$/.test(lines[i]!)) return { value: lines.slice(0, i + 1).join('\n'), rest: lines.slice(i + 1).join('\r\n') };
  }
  return undefined;
};

/** Reads whole SMTP replies from a raw socket. */
class SmtpLines extends SocketBuffer {
  static async open(port: number): Promise<SmtpLines> {
    return new SmtpLines(await SocketBuffer.connectTo(port), 'latin1');
  }
  /** The next complete reply (all its lines joined by \n), or undefined when closed. */
  reply(timeoutMs = 5000): Promise<string | undefined> {
    return this.take(takeReply, timeoutMs, 'reply');
  }
  async cmd(line: string): Promise<string | undefined> {
    this.send(`${line}\r\n`);
    return await this.reply();
  }
}

describe('filter door (raw SMTP from "Postfix", smtp-sink as next hop)', function () {
  this.timeout(30_000);
  let temp: ReturnType<typeof makeTempDir>;
  let locks: LockStore;
  let door: Door | undefined;
  let sink: SmtpSink | undefined;
  const open: SmtpLines[] = [];

  before(function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix package)');
    temp = makeTempDir('sluice-filter-raw-');
    locks = lockStoreIn(temp.path);
  });
  after(async () => {
    await locks?.close();
    temp?.remove();
  });
  afterEach(async () => {
    for (const c of open.splice(0)) c.socket.destroy();
    await door?.stop(500);
    door = undefined;
    await sink?.stop();
    sink = undefined;
  });

  async function setup(decide: Decide, o: { sinkFlags?: string[]; door?: Partial<FilterDoorOptions>; deps?: Partial<DoorDeps> } = {}): Promise<{ policy: ScriptedPolicy; c: SmtpLines }> {
    sink = await startSmtpSink({ flags: o.sinkFlags ?? [] });
    const policy = scriptedPolicy(decide);
    const port = await freePort();
    door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port }, nextHop: { host: '127.0.0.1', port: sink.port }, spoolDir: temp.path, ...o.door }, { ...doorDeps({ policy, locks }), ...o.deps });
    await door.start();
    const c = await SmtpLines.open(port);
    open.push(c);
    assert.equal(await c.reply(), '220 sluice.test ESMTP sluice filter');
    return { policy, c };
  }

  it('offers only the extensions the next hop has, and XFORWARD', async () => {
    const { c } = await setup(() => undefined, { sinkFlags: ['-N'] });
    const ehlo = (await c.cmd('EHLO mx.example'))!.split('\n');
    assert.deepEqual(ehlo, ['250-sluice.test', '250-PIPELINING', `250-SIZE ${50 * 1024 * 1024}`, '250-ENHANCEDSTATUSCODES', '250-8BITMIME', '250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE']);
  });

  it('XFORWARD: Postfix-like errors, per-transaction reset, the original client reaches the rules', async () => {
    const { c, policy } = await setup(() => undefined);
    await c.cmd('EHLO mx.example');
    assert.equal(await c.cmd('XFORWARD FOO=bar'), '501 5.5.4 Bad XFORWARD attribute name: FOO');
    assert.equal(await c.cmd('XFORWARD NAME=[TEMPUNAVAIL] ADDR=IPv6:2001:db8::7 PORT=2525'), '250 2.0.0 Ok');
    assert.equal(await c.cmd('XFORWARD PROTO=ESMTP HELO=orig.example IDENT=ABC123 SOURCE=REMOTE'), '250 2.0.0 Ok');
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Ok');
    assert.equal(await c.cmd('XFORWARD NAME=late'), '503 5.5.1 Error: MAIL transaction in progress');
    assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '250 2.1.5 Ok');
    assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
    assert.equal(await c.cmd('Subject: one\r\n\r\nbody\r\n.'), '250 2.0.0 Ok');
    const first = policy.calls.find((x) => x.stage === 'connect')!.tx;
    assert.deepEqual(first.session.client, { ip: '2001:db8::7', port: 2525 });
    assert.equal(first.session.clientName, 'unknown');
    assert.equal(first.session.helo, 'orig.example');
    assert.equal(first.session.destinationSource, 'xforward');

    // Next transaction without XFORWARD: the attributes do not carry over; the client is the peer itself.
    policy.calls.length = 0;
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Ok');
    const second = policy.calls.find((x) => x.stage === 'connect')!.tx;
    assert.equal(second.session.client.ip, '127.0.0.1');
    assert.equal(second.session.helo, 'mx.example');
    assert.equal(second.session.destinationSource, 'none');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Ok');
    assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
  });

  it('command order, pipelining and line limits', async () => {
    const { c } = await setup(() => undefined);
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '503 5.5.1 Error: send HELO/EHLO first');
    await c.cmd('EHLO mx.example');
    assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '503 5.5.1 Error: need MAIL command');
    assert.equal(await c.cmd('DATA'), '503 5.5.1 Error: need MAIL command');
    assert.equal(await c.cmd('STARTTLS'), '502 5.5.1 Error: command not implemented');
    assert.equal(await c.cmd('X' + 'A'.repeat(5000)), '500 5.5.0 Error: line too long');
    // A CR or NUL inside a line: refused, so a MAIL parameter can never carry one to the next hop.
    assert.equal(await c.cmd('MAIL FROM:<a@example.org> ENVID=a\rb'), '500 5.5.2 Error: bare CR or NUL in command line');
    assert.equal(await c.cmd('NOOP \0'), '500 5.5.2 Error: bare CR or NUL in command line');
    assert.equal(await c.cmd('MAIL FROM:<a@example.org> SIZE=999999999999'), '552 5.3.4 Message size exceeds fixed limit');
    // Pipelined envelope: replies come back in order.
    c.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n');
    assert.equal(await c.reply(), '250 2.1.0 Ok');
    assert.equal(await c.reply(), '250 2.1.5 Ok');
    assert.equal(await c.reply(), '250 2.1.5 Ok');
    assert.equal(await c.reply(), '354 End data with <CR><LF>.<CR><LF>');
    // The final dot and a pipelined QUIT in one packet.
    c.send('Subject: x\r\n\r\n..stuffed\r\n.\r\nQUIT\r\n');
    assert.equal(await c.reply(), '250 2.0.0 Ok');
    assert.equal(await c.reply(), '221 2.0.0 Bye');
    const [m] = await sink!.waitForMessages(1);
    assert.deepEqual(m!.recipients, ['b@example.net', 'c@example.net']);
    assert.equal(m!.body, '.stuffed\n');
  });

  it('the next hop\'s own answers come back (refused recipient, refused final dot)', async () => {
    const { c } = await setup(() => undefined, { sinkFlags: ['-f', 'RCPT'] });
    await c.cmd('EHLO mx.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.match((await c.cmd('RCPT TO:<b@example.net>'))!, /^5\d\d /);
    assert.equal(await c.cmd('DATA'), '554 5.5.1 Error: no valid recipients');
  });

  it('relays a soft refusal of the final dot and nothing else is acknowledged', async () => {
    const { c } = await setup(() => undefined, { sinkFlags: ['-r', '.'] });
    await c.cmd('EHLO mx.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    assert.match((await c.cmd('Subject: x\r\n\r\nbody\r\n.'))!, /^4\d\d /);
  });

  it('oversized messages get 552 and never reach the next hop', async () => {
    const { c } = await setup(() => undefined, { door: { maxMessageSize: 1000 } });
    await c.cmd('EHLO mx.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    c.send('Subject: big\r\n\r\n' + ('y'.repeat(70) + '\r\n').repeat(100));
    assert.equal(await c.cmd('.'), '552 5.3.4 Error: message file too big');
    // The session goes on; the next message is fine.
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    assert.equal(await c.cmd('Subject: small\r\n\r\nok\r\n.'), '250 2.0.0 Ok');
    const msgs = await sink!.waitForMessages(1);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sink!.messages().length, 1);
    assert.equal(msgs[0]!.headers.find(([n]) => n === 'Subject')?.[1], 'small');
  });

  it('bare LF in DATA cannot end the message early (smuggling): it stays content for the next hop', async () => {
    const { c } = await setup(() => undefined);
    await c.cmd('EHLO mx.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    c.send('Subject: smuggle\r\n\r\nbefore\n.\nMAIL FROM:<evil@example.org>\r\nafter\r\n');
    assert.equal(await c.cmd('.'), '250 2.0.0 Ok');
    const [m] = await sink!.waitForMessages(1);
    assert.match(m!.body, /before\n\.\nMAIL FROM:<evil@example\.org>\nafter\n/);
    assert.equal(sink!.messages().length, 1);
  });

  it('scanners run on the spooled message; a rewritten message (filter command) is what goes on', async () => {
    const scanners = createScannerSet(
      { filter: { command: ['/bin/sed', 's/^Subject: .*/Subject: rewritten by filter/'], mode: 'pipe', timeout: 5000, maxSize: 1024 * 1024, tempDir: temp.path } },
      NULL_LOGGER,
    );
    try {
      const { c, policy } = await setup(() => undefined, { deps: { scanners } });
      await c.cmd('EHLO mx.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('RCPT TO:<b@example.net>');
      await c.cmd('DATA');
      assert.equal(await c.cmd('Subject: original\r\n\r\nbody\r\n.'), '250 2.0.0 Ok');
      const [m] = await sink!.waitForMessages(1);
      assert.equal(m!.headers.find(([n]) => n === 'Subject')?.[1], 'rewritten by filter');
      const eom = policy.calls.find((x) => x.stage === 'eom')!.tx;
      assert.deepEqual(eom.message.scan.failed, {});
      assert.equal(eom.message.headers.find(([n]) => n === 'Subject')?.[1], 'original');
    } finally {
      await scanners.close();
    }
  });

  it('a quarantine verdict without a quarantine store defers (nothing lost); with one, it is handed over', async () => {
    const got: string[] = [];
    const { c } = await setup((stage) => (stage === 'eom' ? { action: 'quarantine', reason: 'look' } : undefined));
    await c.cmd('EHLO mx.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    assert.equal(await c.cmd('Subject: q\r\n\r\nbody\r\n.'), '451 4.7.1 Message held for review, try again later');
    await door!.stop(200);
    await sink!.stop();
    sink = undefined;

    const r = await setup((stage) => (stage === 'eom' ? { action: 'quarantine', reason: 'look' } : undefined), {
      door: {
        quarantine: async (content, info) => {
          const parts: Buffer[] = [];
          for await (const p of content) parts.push(p as Buffer);
          got.push(`${info.reason}|${info.recipients.join(',')}|${Buffer.concat(parts).toString('latin1')}`);
        },
      },
    });
    await r.c.cmd('EHLO mx.example');
    await r.c.cmd('MAIL FROM:<a@example.org>');
    await r.c.cmd('RCPT TO:<b@example.net>');
    await r.c.cmd('DATA');
    assert.equal(await r.c.cmd('Subject: q\r\n\r\nbody\r\n.'), '250 2.0.0 Ok: held for review');
    assert.deepEqual(got, ['look|b@example.net|Subject: q\r\n\r\nbody\r\n']);
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(sink!.messages().length, 0);
  });

  it('next hop gone mid-session: 451, and the session recovers when it is back', async () => {
    const { c } = await setup(() => undefined);
    await c.cmd('EHLO mx.example');
    const port = sink!.port;
    await sink!.stop();
    sink = undefined;
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '451 4.4.1 Next hop unavailable, try again later');
    sink = await startSmtpSink({ port });
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Ok');
  });

  it('a next hop that resets while the door waits to write (large message, slow reader): 451, not a hang', async () => {
    const slow = await startFaultUpstream({ slowData: { everyBytes: 256 * 1024, ms: 100 }, resetAfterDataBytes: 2 * 1024 * 1024 });
    try {
      const port = await freePort();
      door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port }, nextHop: { host: '127.0.0.1', port: slow.port }, spoolDir: temp.path }, doorDeps({ policy: scriptedPolicy(() => undefined), locks, limits: { dataTimeout: 60_000 } }));
      await door.start();
      const c = await SmtpLines.open(port);
      open.push(c);
      await c.reply();
      await c.cmd('EHLO mx.example');
      assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.0.0 Ok');
      assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '250 2.0.0 Ok');
      assert.match((await c.cmd('DATA')) ?? '', /^354 /);
      const line = 'a line of a large message that the next hop reads slowly, about eighty bytes long\r\n';
      c.send(`Subject: big\r\n\r\n${line.repeat(Math.ceil((12 * 1024 * 1024) / line.length))}.\r\n`);
      assert.equal(await c.reply(15_000), '451 4.4.1 Next hop unavailable, try again later');
    } finally {
      await door?.stop(500);
      door = undefined;
      await slow.close();
    }
  });

  /** A filter door in front of a fault upstream with `script`; the client has read the greeting (or the 421). */
  async function againstFaultHop(script: Parameters<typeof startFaultUpstream>[0]): Promise<{ c: SmtpLines; hop: Awaited<ReturnType<typeof startFaultUpstream>>; greeting: string | undefined }> {
    const hop = await startFaultUpstream(script);
    const port = await freePort();
    door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port }, nextHop: { host: '127.0.0.1', port: hop.port }, spoolDir: temp.path }, doorDeps({ policy: scriptedPolicy(() => undefined), locks }));
    await door.start();
    const c = await SmtpLines.open(port);
    open.push(c);
    return { c, hop, greeting: await c.reply() };
  }

  for (const [what, script] of [
    ['250 to DATA (it never asked for the message)', { replies: { DATA: '250 2.0.0 Ok\r\n' } }],
    ['a multi-line 250 to DATA', { replies: { DATA: '250-unfinished\r\n250 ok\r\n' } }],
    ['354 to the final dot', { eomReply: '354 go on\r\n' }],
  ] as const) {
    it(`a next hop that answers ${what}: Postfix gets 451, never a 250 (the mail stays queued)`, async () => {
      const { c, hop } = await againstFaultHop(script);
      try {
        await c.cmd('EHLO mx.example');
        assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.0.0 Ok');
        assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '250 2.0.0 Ok');
        assert.match((await c.cmd('DATA')) ?? '', /^354 /);
        assert.equal(await c.cmd('Subject: t\r\n\r\nbody\r\n.'), '451 4.4.1 Next hop unavailable, try again later');
        assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
      } finally {
        await door?.stop(500);
        door = undefined;
        await hop.close();
      }
    });
  }

  it('a next hop that fails before its greeting: 421, and the session ends as soon as Postfix leaves', async () => {
    const { c, hop, greeting } = await againstFaultHop({ greeting: 'garbage\r\n' });
    try {
      assert.equal(greeting, '421 4.4.1 sluice.test Next hop unavailable, try again later');
      // Postfix's smtp client answers a 421 greeting with QUIT; nobody reads it any more.
      c.send('QUIT\r\n');
      assert.equal(await c.reply(), undefined, 'the door closes the connection after its 421');
      const t0 = Date.now();
      while (door!.activeSessions > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      // It used to stop reading the client before the 421 and so lingered until a 2 s timer destroyed the socket.
      assert.ok(Date.now() - t0 < 1000, `the session ended ${Date.now() - t0} ms after the client had gone`);
    } finally {
      await door?.stop(500);
      door = undefined;
      await hop.close();
    }
  });

  it('survives random garbage commands: every line gets a reply, then a normal message still passes', async () => {
    const { c } = await setup(() => undefined);
    await c.cmd('EHLO mx.example');
    const lines = fc.sample(fc.string({ unit: 'binary', maxLength: 300 }).map((s) => s.replace(/[\r\n]/g, ' ')), { numRuns: 8, seed: 42 });
    for (const line of [...lines, 'MAIL FROM:<unterminated', 'RCPT TO:<>', 'MAIL FROM:<a@b> SIZE=abc', 'XFORWARD ADDR=+ZZ', 'DATA junk']) {
      const r = await c.cmd(line);
      assert.match(r ?? '', /^[2-5]\d\d[ -]/, JSON.stringify(line));
      if (/^421/.test(r ?? '')) break;
    }
    // The error budget may have closed this session; a new one works normally.
    const c2 = await SmtpLines.open(Number(door!.addresses[0]!.split(':').pop()));
    open.push(c2);
    assert.equal(await c2.reply(), '220 sluice.test ESMTP sluice filter');
    await c2.cmd('EHLO mx.example');
    assert.equal(await c2.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Ok');
    assert.equal(await c2.cmd('RCPT TO:<b@example.net>'), '250 2.1.5 Ok');
    await c2.cmd('DATA');
    assert.equal(await c2.cmd('Subject: fine\r\n\r\nbody\r\n.'), '250 2.0.0 Ok');
  });

  it('refuses clients outside allowFrom', async () => {
    sink = await startSmtpSink();
    const port = await freePort();
    door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port }, nextHop: { host: '127.0.0.1', port: sink.port }, allowFrom: ['192.0.2.0/24'] }, doorDeps({ policy: scriptedPolicy(() => undefined), locks }));
    await door.start();
    const c = await SmtpLines.open(port);
    open.push(c);
    assert.equal(await c.reply(), '554 5.7.1 Access denied');
  });
});

describe('filter door passes XFORWARD on to a real Postfix smtpd (IPv6 with its prefix)', function () {
  this.timeout(30_000);
  let temp: ReturnType<typeof makeTempDir> | undefined;
  let locks: LockStore | undefined;
  let door: Door | undefined;
  let pf: PostfixInstance | undefined;

  before(async function () {
    requirePeer(this, postfixAvailable, 'postfix (root)');
    temp = makeTempDir('sluice-filter-xf-');
    locks = lockStoreIn(temp.path);
    // The next hop is the instance's own smtpd, trusting us for XFORWARD and accepting IPv6 addresses in it.
    pf = await startPostfix({ main: { smtpd_authorized_xforward_hosts: '127.0.0.0/8', inet_protocols: 'all' } });
    const port = await freePort();
    door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port }, nextHop: { host: '127.0.0.1', port: pf.smtpPort } }, doorDeps({ policy: scriptedPolicy(() => undefined), locks }));
    await door.start();
  });
  after(async () => {
    await door?.stop(500);
    await pf?.stop();
    await locks?.close();
    temp?.remove();
  });

  it('the receiving smtpd logs the original client and queue id', async () => {
    const port = Number(door!.addresses[0]!.split(':').pop());
    const c = await SmtpLines.open(port);
    try {
      await c.reply();
      await c.cmd('EHLO mx.example');
      assert.equal(await c.cmd('XFORWARD NAME=client.example ADDR=IPv6:2001:db8::7 PORT=4711 PROTO=ESMTP HELO=orig.example IDENT=QID123 SOURCE=REMOTE'), '250 2.0.0 Ok');
      assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Ok');
      assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '250 2.1.5 Ok');
      await c.cmd('DATA');
      assert.match((await c.cmd('Subject: x\r\n\r\nbody\r\n.'))!, /^250 2\.0\.0 Ok: queued as [0-9A-F]+$/);
      await pf!.waitForLog(/client=localhost\[127\.0\.0\.1\], orig_queue_id=QID123, orig_client=client\.example\[2001:db8::7\]/);
      const [m] = await pf!.sink!.waitForMessages(1);
      assert.deepEqual(m!.recipients, ['b@example.net']);
    } finally {
      c.socket.destroy();
    }
  });
});
