/**
 * Hold mode of the intercept door (holdMessagesUpTo): the message is kept until the eom verdict and then sent with
 * every header mutation applied, or stored in the quarantine; above the limit the door falls back to streaming.
 * Real rule engine, fault-injecting upstream, raw client: exact replies and exact bytes the upstream received.
 */
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { QuarantineStore } from '../../lib/daemon/quarantine-store.js';
import { createScannerSet, type ConfiguredScannerSet } from '../../lib/scanners/scanner-set.js';
import { writeScript } from '../helpers/filter-scripts.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { lockKey } from '../../lib/policy/lock-store.js';
import type { FaultUpstream } from '../helpers/fault-upstream.js';
import { startHoldDoor, type HoldDoor } from '../helpers/hold-door.js';
import { until } from '../helpers/intercept-harness.js';
import type { RawClient } from '../helpers/smtp-raw-client.js';
import { greet, useRelayFixture } from '../helpers/relay-fixture.js';

const TRACE = 'rule trace at data: => add header "X-NAT-Received" "from [{client.ip}] by {proxy.name}"';
const EDITS = `${TRACE}
rule edit at eom: => add header "X-Eom" "checked" remove header "X-Drop" insert header "X-First" "1"
rule bad at eom: header("Subject") ~ /reject me/ => reject 550 5.7.1 "Content refused"
rule held at eom: header("Subject") ~ /quarantine me/ => quarantine "review {sender}"
`;

describe('intercept hold mode (fault upstream, raw client, real rules)', function () {
  this.timeout(20000);
  const fx = useRelayFixture();
  let h: HoldDoor | undefined;

  async function start(p: Omit<Parameters<typeof startHoldDoor>[0], 'upstreamPort'>): Promise<{ up: FaultUpstream; h: HoldDoor }> {
    const up = await fx.upstream();
    h = fx.door(await startHoldDoor({ upstreamPort: up.port, ...p }));
    return { up, h };
  }

  async function open(subject: string): Promise<RawClient> {
    const c = await fx.client(h!.port);
    assert.match(await c.reply(), /^220 /);
    assert.match(await c.cmd('EHLO client.test'), /^250-/);
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.0.0 Ok\r\n');
    assert.equal(await c.cmd('RCPT TO:<b@example.net>'), '250 2.0.0 Ok\r\n');
    assert.match(await c.cmd('DATA'), /^354 /);
    c.write(`Subject: ${subject}\r\nX-Drop: one\r\nFrom: a@example.org\r\nX-Drop: two\r\n`);
    return c;
  }

  it('holds the message until the verdict, then sends it with every eom edit (trace header first), dot-stuffing intact', async () => {
    const { up, h } = await start({ rules: EDITS, options: { holdMessagesUpTo: 64 * 1024 } });
    const c = await open('hello');
    c.write('\r\n..leading dot\r\nbody\r\n');
    await new Promise((r) => setTimeout(r, 200));
    const conn = up.connections[0]!;
    assert.ok(!conn.raw.includes('Subject'), 'nothing of the message may reach the upstream before the end of data');
    assert.equal(await c.cmd('.'), '250 2.0.0 Ok: queued\r\n');
    assert.equal(conn.messages.length, 1);
    assert.match(conn.messages[0]!, /^X-NAT-Received: from \[127\.0\.0\.1\] by sluice\.test\r\nX-First: 1\r\nSubject: hello\r\nFrom: a@example\.org\r\nX-Eom: checked\r\n\r\n\.leading dot\r\nbody\r\n$/);
    assert.ok(conn.raw.includes('\r\n..leading dot\r\n'), 'the leading dot is stuffed again on the wire');
    assert.equal(h.events('HOLD').length, 0);
  });

  it('a message over the limit falls back to streaming: the held part first (with the trace header), the rest streamed, eom edits not applied', async () => {
    const { up, h } = await start({ rules: EDITS, options: { holdMessagesUpTo: 2000, holdMemory: 512 } });
    const c = await open('big one');
    const lines: string[] = [];
    for (let i = 0; i < 300; i++) lines.push(i % 7 === 0 ? `.dot line ${i}` : `line ${i} of a message that is longer than the hold limit`);
    const body = lines.map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n');
    c.write(`\r\n${body}\r\n`);
    await until(() => up.connections[0]!.partial.includes('line 299'), 5000, 'the streamed rest');
    assert.equal(await c.cmd('.'), '250 2.0.0 Ok: queued\r\n');
    const got = up.connections[0]!.messages[0]!;
    assert.equal(got, `X-NAT-Received: from [127.0.0.1] by sluice.test\r\nSubject: big one\r\nX-Drop: one\r\nFrom: a@example.org\r\nX-Drop: two\r\n\r\n${lines.join('\r\n')}\r\n`);
    assert.equal(h.events('HOLD').length, 1);
    assert.equal(h.events('HOLD')[0]!['why'], 'size');
  });

  it('falls back even when the chunk that outgrows the limit also holds the end of data (nothing truncated)', async () => {
    const { up, h } = await start({ rules: EDITS, options: { holdMessagesUpTo: 1000 } });
    const c = await open('one write');
    const body = 'z'.repeat(70) + '\r\n';
    assert.equal(await c.cmd(`\r\n${body.repeat(100)}.`), '250 2.0.0 Ok: queued\r\n');
    assert.equal(up.connections[0]!.messages[0], `X-NAT-Received: from [127.0.0.1] by sluice.test\r\nSubject: one write\r\nX-Drop: one\r\nFrom: a@example.org\r\nX-Drop: two\r\n\r\n${body.repeat(100)}`);
    assert.equal(h.events('HOLD').length, 1);
  });

  it('a refusal at eom never sends the message or the dot; the client gets the rule reply', async () => {
    const { up } = await start({ rules: EDITS, options: { holdMessagesUpTo: 64 * 1024 } });
    const c = await open('reject me');
    assert.equal(await c.cmd('\r\nbody\r\n.'), '550 5.7.1 Content refused\r\n');
    await until(() => up.connections[0]!.closed, 3000, 'upstream dropped');
    const raw = up.connections[0]!.raw;
    assert.ok(!raw.includes('Subject'), 'no message byte upstream');
    assert.equal(raw.slice(raw.indexOf('DATA\r\n') + 6), '', 'nothing after DATA, in particular no dot');
    assert.equal(up.connections[0]!.messages.length, 0);
  });

  it('quarantine: one copy in the store (0600, edits applied), 250 to the client, the upstream never sees it', async () => {
    let store: QuarantineStore | undefined;
    const { up, h } = await start({ rules: EDITS, options: { holdMessagesUpTo: 64 * 1024 }, quarantine: (dir) => (store = new QuarantineStore(join(dir, 'q'))) });
    const c = await open('quarantine me');
    assert.equal(await c.cmd('\r\nbody\r\n.'), '250 2.0.0 Ok: message accepted for review\r\n');
    const entries = await store!.list();
    assert.equal(entries.length, 1);
    const e = entries[0]!;
    assert.equal(e.reason, 'review a@example.org');
    assert.equal(e.rule, 'held');
    assert.equal(e.door, 'intercept');
    assert.deepEqual(e.recipients, ['b@example.net']);
    assert.equal(statSync(store!.messagePath(e.id)).mode & 0o777, 0o600);
    const { readFileSync } = await import('node:fs');
    assert.equal(readFileSync(store!.messagePath(e.id), 'latin1'), 'X-NAT-Received: from [127.0.0.1] by sluice.test\r\nX-First: 1\r\nSubject: quarantine me\r\nFrom: a@example.org\r\nX-Eom: checked\r\n\r\nbody\r\n');
    await until(() => up.connections[0]!.closed, 3000, 'upstream dropped');
    assert.ok(!up.connections[0]!.raw.includes('Subject'));
    // The session is taken over: a further message gets 451 (reconnect), never a silent loss.
    assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^451 /);
    assert.equal(h.events('EOM').at(-1)!['quarantined'], e.id);
    // The hold spool directory holds no leftover file.
    const spool = readdirSync(h.dir).filter((n) => n.startsWith('sluice-hold-'));
    for (const d of spool) assert.deepEqual(readdirSync(join(h.dir, d)), []);
  });

  it('quarantine without a store refuses with 550, as without hold mode', async () => {
    const { up } = await start({ rules: EDITS, options: { holdMessagesUpTo: 64 * 1024 } });
    const c = await open('quarantine me');
    assert.equal(await c.cmd('\r\nbody\r\n.'), '550 5.7.1 Message refused by content policy\r\n');
    assert.equal(up.connections[0]!.messages.length, 0);
  });

  it('a held message spills to a private 0600 file in a 0700 directory, removed once sent', async () => {
    const { up, h } = await start({ rules: TRACE, options: { holdMessagesUpTo: 1024 * 1024, holdMemory: 1024 } });
    const c = await open('spill');
    c.write('\r\n' + 'x'.repeat(100) + '\r\n');
    c.write('y'.repeat(20_000) + '\r\n');
    await until(() => readdirSync(h.dir).some((n) => n.startsWith('sluice-hold-')), 3000, 'the spool directory');
    const spool = join(h.dir, readdirSync(h.dir).find((n) => n.startsWith('sluice-hold-'))!);
    assert.equal(statSync(spool).mode & 0o777, 0o700);
    await until(() => readdirSync(spool).length === 1, 3000, 'the spill file');
    assert.equal(statSync(join(spool, readdirSync(spool)[0]!)).mode & 0o777, 0o600);
    assert.equal(await c.cmd('.'), '250 2.0.0 Ok: queued\r\n');
    assert.equal(up.connections[0]!.messages[0]!.length, 'X-NAT-Received: from [127.0.0.1] by sluice.test\r\n'.length + 'Subject: spill\r\nX-Drop: one\r\nFrom: a@example.org\r\nX-Drop: two\r\n\r\n'.length + 102 + 20_002);
    await until(() => readdirSync(spool).length === 0, 3000, 'the spill file removed');
  });

  it('held longer than limits.dataTimeout: what is held goes upstream and the rest streams (the upstream is never idle longer)', async () => {
    const { up, h } = await start({ rules: EDITS, limits: { dataTimeout: 400 }, options: { holdMessagesUpTo: 64 * 1024 } });
    const c = await open('slow');
    c.write('\r\n');
    for (let i = 0; i < 6; i++) {
      c.write(`slow line ${i}\r\n`);
      await new Promise((r) => setTimeout(r, 120));
    }
    assert.ok(up.connections[0]!.partial.includes('slow line 2'), 'the held part went out after dataTimeout');
    assert.equal(await c.cmd('.'), '250 2.0.0 Ok: queued\r\n');
    assert.match(up.connections[0]!.messages[0]!, /^X-NAT-Received: [^\r]*\r\nSubject: slow\r\n[\s\S]*slow line 5\r\n$/);
    assert.equal(h.events('HOLD')[0]!['why'], 'hold time');
  });

  it('the upstream going away during the hold: 451 at the end of data, nothing delivered', async () => {
    const { up } = await start({ rules: TRACE, options: { holdMessagesUpTo: 64 * 1024 } });
    const c = await open('lost');
    c.write('\r\nbody\r\n');
    await until(() => up.connections.length === 1 && up.connections[0]!.raw.includes('DATA'), 3000, 'DATA upstream');
    await up.close();
    assert.equal(await c.cmd('.'), '451 4.4.2 Connection to the next hop lost, try again later\r\n');
  });

  it('a 421 from a rule at MAIL is written and the connection closed (RFC 5321 §3.8), the upstream gets QUIT', async () => {
    const { up } = await start({ rules: 'rule busy at mail: sender == "x@example.org" => tempfail 421 4.3.2 "Busy, closing"' });
    const c = await fx.client(h!.port);
    await greet(c);
    assert.equal(await c.cmd('MAIL FROM:<x@example.org>'), '421 4.3.2 Busy, closing\r\n');
    await c.closed;
    await until(() => up.connections[0]!.closed, 3000, 'upstream closed');
    assert.ok(up.connections[0]!.commands.includes('QUIT'));
    assert.ok(!up.connections[0]!.raw.includes('MAIL FROM'));
  });

  it('the filter command\'s rewritten message is what goes upstream in hold mode, with the edits; its file is removed', async () => {
    const tmp = makeTempDir('sluice-hold-filter-');
    let scanners: ConfiguredScannerSet | undefined;
    try {
      const filter = writeScript(tmp.path, 'f.sh', 'printf "X-Filtered: yes\\r\\n"; sed "s/secret/[redacted]/"');
      scanners = createScannerSet({ filter: { command: [filter], mode: 'pipe', timeout: 10_000, maxSize: 1024 * 1024, tempDir: join(tmp.path, 'ftmp') }, tempDir: join(tmp.path, 'spool') }, NULL_LOGGER);
      const { up } = await start({ rules: EDITS, scanners, options: { holdMessagesUpTo: 64 * 1024 } });
      const c = await open('filtered');
      assert.equal(await c.cmd('\r\nthe secret word\r\n..x\r\n.'), '250 2.0.0 Ok: queued\r\n');
      assert.equal(up.connections[0]!.messages[0], 'X-NAT-Received: from [127.0.0.1] by sluice.test\r\nX-First: 1\r\nX-Filtered: yes\r\nSubject: filtered\r\nFrom: a@example.org\r\nX-Eom: checked\r\n\r\nthe [redacted] word\r\n.x\r\n');
      assert.ok(up.connections[0]!.raw.includes('\r\n..x\r\n'), 'the filter output is dot-stuffed on the wire');
      await until(() => readdirSync(join(tmp.path, 'ftmp')).length === 0, 3000, 'the rewritten file removed');
    } finally {
      await scanners?.close();
      tmp.remove();
    }
  });

  it('max-host: the 21st concurrent session from one client gets the rule reply and the client is locked', async () => {
    const rules = 'rule max-host at connect: sessions.client > 20 => tempfail 421 4.7.0 "Too many connections from {client.ip}" lock 10m reason "MAX_HOST"';
    const { h } = await start({ rules, limits: { sessionsPerClient: 100 } });
    const open20: RawClient[] = [];
    for (let i = 0; i < 20; i++) {
      const c = await fx.client(h.port);
      open20.push(c);
      assert.match(await c.reply(), /^220 /);
    }
    const c21 = await fx.client(h.port);
    // Before EHLO no enhanced status code is sent (RFC 2034 §3).
    assert.equal(await c21.reply(), '421 Too many connections from 127.0.0.1\r\n');
    await c21.closed; // 421 closes the connection (RFC 5321 §3.8)
    const lock = await h.locks.isLocked(lockKey('client', '127.0.0.1'));
    assert.equal(lock?.reason, 'MAX_HOST');
    // Locked now: a new session is refused at connect, before any upstream connection.
    const c22 = await fx.client(h.port);
    assert.equal(await c22.reply(), '554 sluice.test Access denied for your host, try again later\r\n');
  });
});
