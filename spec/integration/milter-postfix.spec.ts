/**
 * The milter door behind a real, private Postfix (conf/postfix/milter.main.cf with the door's test port):
 * swaks / smtp-source / a raw SMTP client send mail, smtp-sink receives it. Asserts what is on the wire:
 * the exact SMTP replies Postfix gives for each verdict, headers as delivered, the hold queue.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { testDeps } from '../helpers/milter-client.js';
import { milterEditPolicy, milterTestEngine } from '../helpers/milter-rules.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { smtpSource } from '../helpers/smtp-source.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { SmtpDialog } from '../helpers/milter-smtp-dialog.js';

describe('integration/milter behind a real Postfix', function () {
  this.timeout(60_000);
  let pf: PostfixInstance | undefined;
  let door: Door | undefined;
  let engineDeps: ReturnType<typeof testDeps>;

  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable, 'postfix (root), smtp-sink and swaks');
    const port = await freePort();
    engineDeps = testDeps(await milterTestEngine());
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, engineDeps);
    await door.start();
    pf = await startPostfix({ snippets: ['milter'], ports: { 10030: port } });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
  });

  const send = (o: { from?: string; to?: string | string[]; helo?: string; headers?: Array<[string, string]>; body?: string; extra?: string[] }) =>
    swaks({ server: pf!.host, port: pf!.smtpPort, helo: o.helo ?? 'client.example', ...o });
  const sink = () => pf!.sink!;

  it('delivers a clean message with the data-stage trace header and the eom header, as the rules render them', async () => {
    const before = sink().messages().length;
    const r = await send({ from: 'alice@example.com', to: 'bob@example.net', extra: ['--header', 'Subject: hello there'] });
    assert.equal(r.code, 0, r.transcript);
    const [m] = (await sink().waitForMessages(before + 1)).slice(before);
    assert.ok(m);
    const h = (name: string) => m.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, val]) => val);
    assert.deepEqual(h('X-Sluice-Trace'), ['milter sluice.test']);
    assert.deepEqual(h('X-Sluice'), ['auth= client=127.0.0.1']);
    assert.deepEqual(h('Subject'), ['hello there']);
    // Added headers are appended after the message's own, with exactly one space after the colon (we negotiate
    // HDR_LEADSPC and supply it ourselves).
    assert.match(m.content, /\nX-Sluice-Trace: milter sluice\.test\nX-Sluice: auth= client=127\.0\.0\.1\n\n/);
    assert.deepEqual(m.recipients, ['bob@example.net']);
  });

  it('changes and deletes headers with Postfix index semantics (policy swapped in with update())', async () => {
    door!.update(testDeps(milterEditPolicy()));
    try {
      const before = sink().messages().length;
      const r = await send({ from: 'alice@example.com', to: 'bob@example.net', headers: [['X-Remove-Me', 'one'], ['X-Keep', 'k'], ['X-Remove-Me', 'two']], extra: ['--header', 'Subject: edit me'] });
      assert.equal(r.code, 0, r.transcript);
      const [m] = (await sink().waitForMessages(before + 1)).slice(before);
      assert.ok(m);
      const names = m.headers.map(([n]) => n);
      assert.ok(!names.includes('X-Remove-Me'), 'both X-Remove-Me deleted (highest index first)');
      assert.ok(names.includes('X-Keep'));
      assert.ok(!names.includes('X-Sluice-Trace'), 'the engine rules are not in force for this session');
      assert.deepEqual(m.headers.filter(([n]) => n === 'Subject').map(([, x]) => x), ['[checked] edit me']);
      assert.match(m.content, /\nSubject: \[checked\] edit me\n/);
      assert.match(m.content, /\nX-Edited: yes\nX-Folded: line one\n\tline two\n\n/, 'folded with LF + TAB: one header, no doubled CR');
      assert.match(m.content, /^X-Top: first\nReceived: from /, 'INSHEADER index 0 goes above Postfix\'s own Received');
    } finally {
      door!.update(engineDeps);
    }
  });

  it('rejects at HELO, MAIL and RCPT with the rule reply; RCPT reject refuses only that recipient', async () => {
    const helo = await send({ helo: 'bad.helo.example', to: 'x@example.net' });
    assert.notEqual(helo.code, 0);
    assert.ok(helo.serverLines.some((l) => l === '550 5.7.1 Bad HELO'), helo.transcript);

    const blocked = await send({ from: 'blocked@example.com', to: 'x@example.net' });
    assert.notEqual(blocked.code, 0);
    assert.ok(blocked.serverLines.includes('550 5.7.1 Sender blocked'), blocked.transcript);

    const before = sink().messages().length;
    const r = await send({ from: 'alice@example.com', to: ['bad@example.net', 'good@example.net', 'later@example.net'] });
    assert.ok(r.serverLines.includes('550 5.1.1 No such user here'), r.transcript);
    assert.ok(r.serverLines.includes('451 4.2.0 Try later'), r.transcript);
    const [m] = (await sink().waitForMessages(before + 1)).slice(before);
    assert.deepEqual(m?.recipients, ['good@example.net']);
  });

  it('rejects at CONNECT: Postfix refuses the session (with its own 554 greeting, not the rule text)', async () => {
    const r = await send({ to: 'x@example.net', extra: ['--local-interface', '127.0.0.2'] });
    assert.notEqual(r.code, 0);
    // Postfix 3.7 turns a 5xx milter verdict at CONNECT into its "not accepting connections" greeting.
    assert.ok(r.serverLines.some((l) => /^554 \S+ ESMTP not accepting connections$/.test(l)), r.transcript);
    await pf!.waitForLog(/milter-reject: CONNECT from [^\n]*127\.0\.0\.2\]: 554 5\.7\.1 Not welcome here/);
  });

  it('discards silently and holds quarantined mail in the hold queue', async () => {
    const before = sink().messages().length;
    const d = await send({ from: 'discard@example.com', to: 'bob@example.net' });
    assert.equal(d.code, 0, d.transcript);
    await pf!.waitForLog(/milter-discard/);
    const q = await send({ from: 'hold@example.com', to: 'bob@example.net', extra: ['--header', 'Subject: hold me'] });
    assert.equal(q.code, 0, q.transcript);
    const held = await pf!.waitForQueue((entries) => entries.some((e) => e.queue_name === 'hold' && e.sender === 'hold@example.com'));
    assert.equal(held.filter((e) => e.queue_name === 'hold').length, 1);
    await pf!.waitForLog(/milter triggers HOLD action/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink().messages().length, before, 'neither message was delivered');
  });

  it('rejects an oversized message at end of DATA with the rule reply (body chunks counted)', async () => {
    const d = await SmtpDialog.open(pf!.smtpPort);
    assert.match(await d.reply(), /^220/);
    assert.match(await d.cmd('EHLO client.example'), /^250/);
    assert.match(await d.cmd('MAIL FROM:<alice@example.com>'), /^250/);
    assert.match(await d.cmd('RCPT TO:<bob@example.net>'), /^250/);
    assert.match(await d.cmd('DATA'), /^354/);
    const line = 'x'.repeat(76) + '\r\n';
    assert.equal(await d.cmd('Subject: big\r\n\r\n' + line.repeat(3000) + '.'), '554 5.6.0 Message too big for this test');
    assert.match(await d.cmd('QUIT'), /^221/);
    d.close();
  });

  it('handles many messages in one SMTP session (ABORT between messages, nothing leaks)', async () => {
    const before = sink().messages().length;
    const r = await smtpSource(['-m', '6', '-s', '1', '-d', '-f', 'alice@example.com', '-t', 'bob@example.net', '-S', 'batch', '-M', 'client.example', `127.0.0.1:${pf!.smtpPort}`]);
    assert.equal(r.code, 0, r.out);
    const msgs = (await sink().waitForMessages(before + 6)).slice(before);
    assert.equal(msgs.length, 6);
    for (const m of msgs) {
      assert.equal(m.headers.filter(([n]) => n === 'X-Sluice').length, 1);
      assert.equal(m.headers.filter(([n]) => n === 'X-Sluice-Trace').length, 1);
      assert.deepEqual(m.headers.filter(([n]) => n === 'Subject').map(([, v]) => v), ['batch']);
    }
    await pf!.waitForLog(/disconnect from [^\n]* mail=6 rcpt=6 data=6 /, 10_000);
  });

  it('judges local submissions too (non_smtpd_milters: sendmail(1), addresses without brackets, QUIT without ABORT)', async () => {
    const before = sink().messages().length;
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = execFile('/usr/sbin/sendmail', ['-C', pf!.configDir, '-f', 'local@example.com', 'bob@example.net'], { timeout: 20_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? -1 : 0, out: String(stdout) + String(stderr) }),
      );
      child.stdin?.end('Subject: local submission\n\nhello from sendmail(1)\n');
    });
    assert.equal(r.code, 0, r.out);
    const [m] = (await sink().waitForMessages(before + 1, 20_000)).slice(before);
    assert.equal(m?.sender, 'local@example.com');
    assert.deepEqual(m?.headers.filter(([n]) => n === 'X-Sluice').map(([, v]) => v), ['auth= client=127.0.0.1']);
    assert.equal(m?.headers.filter(([n]) => n === 'X-Sluice-Trace').length, 1);
  });

  it('survives RSET in the middle of a message and a client that disconnects mid-DATA', async () => {
    const before = sink().messages().length;
    const d = await SmtpDialog.open(pf!.smtpPort);
    assert.match(await d.reply(), /^220/);
    assert.match(await d.cmd('EHLO client.example'), /^250/);
    assert.match(await d.cmd('MAIL FROM:<first@example.com>'), /^250/);
    assert.match(await d.cmd('RCPT TO:<bad@example.net>'), /^550 5\.1\.1 No such user here/);
    assert.match(await d.cmd('RCPT TO:<one@example.net>'), /^250/);
    assert.match(await d.cmd('RSET'), /^250/);
    assert.match(await d.cmd('MAIL FROM:<second@example.com>'), /^250/);
    assert.match(await d.cmd('RCPT TO:<two@example.net>'), /^250/);
    assert.match(await d.cmd('DATA'), /^354/);
    assert.match(await d.cmd('Subject: after rset\r\n\r\nbody\r\n.'), /^250/);
    assert.match(await d.cmd('QUIT'), /^221/);
    d.close();
    const [m] = (await sink().waitForMessages(before + 1)).slice(before);
    assert.equal(m?.sender, 'second@example.com');
    assert.deepEqual(m?.recipients, ['two@example.net']);
    assert.deepEqual(m?.headers.filter(([n]) => n === 'X-Sluice').map(([, v]) => v), ['auth= client=127.0.0.1']);

    // Mid-DATA disconnect: the message is dropped, the milter session ends, the next client is served normally.
    const cut = await SmtpDialog.open(pf!.smtpPort);
    await cut.reply();
    await cut.cmd('EHLO client.example');
    await cut.cmd('MAIL FROM:<cut@example.com>');
    await cut.cmd('RCPT TO:<bob@example.net>');
    assert.match(await cut.cmd('DATA'), /^354/);
    cut.socket.write('Subject: cut\r\n\r\nhalf a message\r\n');
    await new Promise((r) => setTimeout(r, 200));
    cut.close();
    await pf!.waitForLog(/lost connection after DATA[^\n]*/);
    const deadline = Date.now() + 10_000;
    while (door!.activeSessions > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(door!.activeSessions, 0, 'the milter connection of the cut session was closed');
    const after = await send({ from: 'alice@example.com', to: 'bob@example.net', extra: ['--header', 'Subject: after cut'] });
    assert.equal(after.code, 0, after.transcript);
    const msgs = await sink().waitForMessages(before + 2);
    assert.ok(!msgs.some((x) => x.sender === 'cut@example.com'));
  });
});
