/**
 * The milter door over a real socket with raw packets: exact reply bytes, one reply per replied-to command,
 * none for D/A/Q/K/NR events, hostile input closing only its own connection.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { RuleStage } from '../../lib/core/stage.js';
import type { Transaction } from '../../lib/core/transaction.js';
import type { Verdict } from '../../lib/core/verdict.js';
import type { Door } from '../../lib/daemon/door.js';
import type { EffectRunner } from '../../lib/core/effects.js';
import type { Effect } from '../../lib/core/verdict.js';
import { encodeCommand, type MilterReply } from '../../lib/milter/milter-codec.js';
import { Proto } from '../../lib/milter/milter-constants.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { SCAN_BACKLOG_LIMIT, type ScanJob, type ScannerSet } from '../../lib/scanners/scanner.js';
import { memoryLogger, MilterTestClient, POSTFIX_OPTNEG, promptAcksOverTcp, scriptedPolicy, testDeps, type Script } from '../helpers/milter-client.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const verdict = (v: Partial<Verdict> & Pick<Verdict, 'action'>): Verdict => ({ mutations: [], effects: [], hits: [], ...v });

describe('milter/milter-session over a socket', function () {
  this.timeout(10000);
  let door: Door | undefined;
  const clients: MilterTestClient[] = [];

  async function start(stages: RuleStage[], script: Script, opts: { scanners?: ScannerSet; effects?: EffectRunner; progressIntervalMs?: number; readTimeoutMs?: number; maxPacket?: number; headers?: boolean; noReply?: boolean } = {}) {
    const policy = scriptedPolicy(stages, script, opts.headers !== undefined ? { headers: opts.headers } : {});
    const logger = memoryLogger();
    const port = await freePort();
    door = createMilterDoor(
      // Most tests here exercise the NR_* path (no replies to events without rules); one test checks the default.
      { listen: `inet:127.0.0.1:${port}`, progressIntervalMs: opts.progressIntervalMs ?? 10000, readTimeoutMs: opts.readTimeoutMs ?? 10000, maxPacket: opts.maxPacket ?? 1 << 20, noReply: opts.noReply ?? true },
      testDeps(policy, { logger, ...(opts.scanners ? { scanners: opts.scanners } : {}), ...(opts.effects ? { effects: opts.effects } : {}) }),
    );
    await door.start();
    return { policy, logger, port };
  }

  async function client(port: number): Promise<MilterTestClient> {
    const c = await MilterTestClient.open({ port });
    clients.push(c);
    return c;
  }

  /** Negotiates like Postfix and returns the protocol bits we agreed on. */
  async function negotiated(c: MilterTestClient): Promise<number> {
    c.send(POSTFIX_OPTNEG);
    const r = await c.reply();
    assert.equal(r.type, 'optneg');
    return r.type === 'optneg' ? r.protocol : 0;
  }

  function postfixConnect(c: MilterTestClient): void {
    c.send(
      { type: 'macro', stage: 'C', macros: [['j', 'mx.test'], ['{daemon_addr}', '127.0.0.1'], ['{daemon_port}', '25'], ['_', 'client.test [192.0.2.7]']] },
      { type: 'connect', hostname: 'client.test', family: 'inet', port: 40000, address: '192.0.2.7' },
    );
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    if (door) await door.stop(100);
    door = undefined;
  });

  it('answers OPTNEG with version 6, requested actions, protocol bits within the offer, and macro lists', async () => {
    const { port } = await start(['connect'], () => undefined);
    const c = await client(port);
    c.send(POSTFIX_OPTNEG);
    const r = await c.reply();
    assert.equal(r.type, 'optneg');
    if (r.type !== 'optneg') return;
    assert.equal(r.version, 6);
    assert.equal(r.actions, 0x131);
    assert.equal(r.protocol & ~0x1fffff, 0);
    assert.equal(r.protocol & Proto.NR_CONN, 0);
    assert.ok(r.macroLists.some((m) => m.stage === 0 && m.names.includes('{client_addr}') && m.names.includes('{daemon_port}')));
    assert.ok(r.macroLists.some((m) => m.stage === 2 && m.names.includes('{auth_authen}')));
  });

  it('by default answers CONNECT..DATA and the end of message, leaves headers and body unanswered, skips EOH', async () => {
    const { port } = await start(['rcpt', 'eom'], () => undefined, { noReply: false });
    const c = await client(port);
    const proto = await negotiated(c);
    assert.equal(proto & (Proto.NR_CONN | Proto.NR_HELO | Proto.NR_MAIL | Proto.NR_RCPT | Proto.NR_DATA | Proto.NODATA), 0);
    assert.equal(proto & (Proto.NR_HDR | Proto.NR_BODY | Proto.NOEOH | Proto.NR_EOH), Proto.NR_HDR | Proto.NR_BODY | Proto.NOEOH | Proto.NR_EOH);
    assert.equal(proto & (Proto.NOHDRS | Proto.NOBODY), 0, 'an eom rule may read the size: headers and body come');
    postfixConnect(c);
    assert.deepEqual(await c.reply(), { type: 'continue' });
    for (const cmd of [{ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }, { type: 'data' }] as const) {
      c.send({ type: 'macro', stage: 'X', macros: [] }, cmd);
      assert.deepEqual(await c.reply(), { type: 'continue' }, cmd.type);
    }
    // Postfix's cleanup writes these in one go, then waits for the end-of-message reply only.
    c.send(
      { type: 'macro', stage: 'L', macros: [] },
      { type: 'header', name: 'Subject', value: ' hi' },
      { type: 'macro', stage: 'B', macros: [] },
      { type: 'body', chunk: Buffer.from('hello\r\n') },
      { type: 'macro', stage: 'E', macros: [['i', 'Q1']] },
      { type: 'eob', chunk: Buffer.alloc(0) },
    );
    assert.deepEqual(await c.untilFinal(), [{ type: 'continue' }]);
    c.send({ type: 'abort' });
    await c.nothingFor(50);
  });

  it('accepts the message at DATA when no later stage has rules and nothing is pending; Postfix then sends no more of it', async () => {
    const { port, logger } = await start(['rcpt'], () => undefined, { noReply: false });
    const c = await client(port);
    const proto = await negotiated(c);
    assert.equal(proto & (Proto.NOHDRS | Proto.NOBODY), Proto.NOHDRS | Proto.NOBODY);
    postfixConnect(c);
    assert.deepEqual(await c.reply(), { type: 'continue' });
    for (let i = 0; i < 2; i++) {
      for (const cmd of [{ type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }] as const) {
        c.send(cmd);
        assert.deepEqual(await c.reply(), { type: 'continue' }, cmd.type);
      }
      c.send({ type: 'macro', stage: 'T', macros: [['i', `Q${i}`]] }, { type: 'data' });
      assert.deepEqual(await c.reply(), { type: 'accept' }, 'DATA');
      c.send({ type: 'abort' });
      await c.nothingFor(30);
    }
    const records = logger.records.filter((r) => r.msg === 'milter message');
    assert.equal(records.length, 2);
    const first = (records[0]?.obj ?? {}) as Record<string, unknown>;
    assert.equal(first['action'], 'accept');
    assert.equal(first['queueId'], 'Q0');
    assert.equal('size' in first, false, 'size unknown: the body never came');
  });

  it('does not accept at DATA when an edit from an earlier stage waits for the end of message', async () => {
    const { port } = await start(['rcpt'], () => verdict({ action: 'continue', mutations: [{ kind: 'add', name: 'X-Seen', value: 'yes' }] }), { noReply: false });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }, { type: 'data' });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    assert.deepEqual(await c.reply(), { type: 'continue' }, 'DATA: the header is still to be added');
    c.send({ type: 'eob', chunk: Buffer.alloc(0) });
    assert.deepEqual(await c.untilFinal(), [{ type: 'addheader', name: 'X-Seen', value: 'yes' }, { type: 'continue' }]);
  });

  it('with delayReject: CONNECT/HELO/MAIL get no reply; their verdicts are answered at RCPT (each recipient), DATA after', async () => {
    const policy = scriptedPolicy(['connect', 'helo', 'mail', 'rcpt'], (stage, tx) => {
      if (stage === 'helo' && tx.session.helo === 'bad') return verdict({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['Bad HELO'] } });
      if (stage === 'mail' && tx.envelope.mailFrom === 'blocked@x') return verdict({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['Sender blocked'] } });
      if (stage === 'mail' && tx.envelope.mailFrom === 'ok@x') return verdict({ action: 'accept' });
      return undefined;
    });
    const port = await freePort();
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}`, delayReject: true, readTimeoutMs: 10000 }, testDeps(policy));
    await door.start();
    const c = await client(port);
    const proto = await negotiated(c);
    assert.equal(proto & (Proto.NR_CONN | Proto.NR_HELO | Proto.NR_MAIL | Proto.NR_RCPT | Proto.NR_DATA), Proto.NR_CONN | Proto.NR_HELO | Proto.NR_MAIL);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'good' }, { type: 'mail', args: ['<blocked@x>'] });
    await c.nothingFor(50);
    c.send({ type: 'rcpt', args: ['<a@y>'] }, { type: 'rcpt', args: ['<b@y>'] });
    const refusal = { type: 'replycode', text: '550 5.7.1 Sender blocked' };
    assert.deepEqual(await c.reply(), refusal);
    assert.deepEqual(await c.reply(), refusal);
    c.send({ type: 'abort' }, { type: 'mail', args: ['<fine@x>'] }, { type: 'rcpt', args: ['<a@y>'] }, { type: 'data' });
    assert.deepEqual(await c.reply(), { type: 'continue' }, 'RCPT of a clean message');
    assert.deepEqual(await c.reply(), { type: 'accept' }, 'DATA: nothing later has rules');
    c.send({ type: 'abort' }, { type: 'mail', args: ['<ok@x>'] }, { type: 'rcpt', args: ['<a@y>'] });
    assert.deepEqual(await c.reply(), { type: 'accept' }, 'a MAIL accept is given at RCPT (Postfix: accept the message)');
    // A HELO refusal holds for the rest of the session, given at each RCPT.
    c.send({ type: 'abort' }, { type: 'helo', name: 'bad' }, { type: 'mail', args: ['<fine@x>'] }, { type: 'rcpt', args: ['<a@y>'] });
    assert.deepEqual(await c.reply(), { type: 'replycode', text: '550 5.7.1 Bad HELO' });
    await c.nothingFor(30);
  });

  it('over a unix socket: NODATA when no DATA rule refuses; DATA rules run before the next event, their edits and failures reach the end of message', async () => {
    const dir = makeTempDir();
    try {
      const path = join(dir.path, 'milter.sock');
      let failData = false;
      const policy = scriptedPolicy(['rcpt', 'data', 'eom'], (stage, tx) => {
        if (stage === 'data' && failData) return verdict({ action: 'tempfail' }); // what the engine answers when it fails
        if (stage === 'data') return verdict({ action: 'continue', mutations: [{ kind: 'add', name: 'X-Trace', value: `rcpts ${tx.envelope.rcpts.join(' ')}` }] });
        return undefined;
      }, { refuses: new Set(['rcpt', 'eom']) });
      door = createMilterDoor({ listen: `unix:${path}`, delayReject: true, readTimeoutMs: 10000 }, testDeps(policy));
      await door.start();
      const c = await MilterTestClient.open({ path });
      clients.push(c);
      const proto = await negotiated(c);
      assert.notEqual(proto & Proto.NODATA, 0, 'DATA is not sent');
      assert.notEqual(proto & Proto.NR_HDR, 0, 'headers go unanswered');
      postfixConnect(c);
      const message = (from: string): void => c.send({ type: 'macro', stage: 'M', macros: [['i', 'Q1']] }, { type: 'mail', args: [`<${from}>`] }, { type: 'rcpt', args: ['<a@y>'] });
      message('one@x');
      assert.deepEqual(await c.reply(), { type: 'continue' }, 'RCPT');
      await c.nothingFor(30);
      assert.deepEqual(policy.calls.map((x) => x.stage), ['rcpt'], 'DATA rules wait for the event after DATA');
      c.send({ type: 'macro', stage: 'L', macros: [['i', 'Q1']] }, { type: 'header', name: 'Subject', value: ' hi' });
      await c.nothingFor(30);
      assert.deepEqual(policy.calls.map((x) => x.stage), ['rcpt', 'data'], 'the first header brings DATA rules to run');
      c.send({ type: 'macro', stage: 'E', macros: [['i', 'Q1']] }, { type: 'eob', chunk: Buffer.alloc(0) });
      assert.deepEqual(await c.untilFinal(), [{ type: 'addheader', name: 'X-Trace', value: ' rcpts a@y' }, { type: 'continue' }]);
      assert.deepEqual(policy.calls.map((x) => x.stage), ['rcpt', 'data', 'eom']);
      // The next message on the connection gets its own DATA stage.
      c.send({ type: 'abort' });
      message('two@x');
      assert.deepEqual(await c.reply(), { type: 'continue' });
      c.send({ type: 'eob', chunk: Buffer.alloc(0) });
      assert.deepEqual(await c.untilFinal(), [{ type: 'addheader', name: 'X-Trace', value: ' rcpts a@y' }, { type: 'continue' }]);
      assert.deepEqual(policy.calls.map((x) => x.stage), ['rcpt', 'data', 'eom', 'rcpt', 'data', 'eom']);
      // A DATA stage that fails anyway (the engine's own tempfail) is answered at the end of message.
      failData = true;
      c.send({ type: 'abort' });
      message('three@x');
      assert.deepEqual(await c.reply(), { type: 'continue' });
      c.send({ type: 'eob', chunk: Buffer.alloc(0) });
      assert.deepEqual(await c.untilFinal(), [{ type: 'tempfail' }]);
      assert.deepEqual(policy.calls.map((x) => x.stage).slice(6), ['rcpt', 'data'], 'a refused message has no eom stage');
    } finally {
      dir.remove();
    }
  });

  it('answers the same offer the same way on every connection, and per door options and offer', async () => {
    const dir = makeTempDir();
    const doors: Door[] = [];
    try {
      // One loaded ruleset behind two doors: the OPTNEG answer is computed once per ruleset, offer and door options.
      const policy = scriptedPolicy(['rcpt', 'data', 'eom'], () => undefined, { refuses: new Set(['rcpt', 'eom']) });
      const path = join(dir.path, 'milter.sock');
      const port = await freePort();
      doors.push(createMilterDoor({ listen: `unix:${path}`, delayReject: true }, testDeps(policy)));
      doors.push(createMilterDoor({ listen: `inet:127.0.0.1:${port}`, delayReject: false }, testDeps(policy)));
      for (const d of doors) await d.start();
      const answer = async (open: { path: string } | { port: number }, offer = POSTFIX_OPTNEG): Promise<MilterReply> => {
        const c = await MilterTestClient.open(open);
        clients.push(c);
        c.send(offer);
        return await c.reply();
      };
      const unix1 = await answer({ path });
      const unix2 = await answer({ path });
      const inet1 = await answer({ port });
      const inet2 = await answer({ port });
      assert.deepEqual(unix2, unix1);
      assert.deepEqual(inet2, inet1);
      assert.ok(unix1.type === 'optneg' && inet1.type === 'optneg');
      if (unix1.type !== 'optneg' || inet1.type !== 'optneg') return;
      assert.notEqual(unix1.protocol & Proto.NR_MAIL, 0, 'delayReject: MAIL answered at RCPT');
      assert.equal(inet1.protocol & Proto.NR_MAIL, 0, 'without delayReject: MAIL answered');
      assert.notEqual(unix1.protocol & Proto.NODATA, 0, 'unix socket: DATA not sent');
      // Over TCP, DATA is skipped only with prompt ACKs (the native addon's TCP_QUICKACK, lib/milter/prompt-ack.ts).
      assert.equal((inet1.protocol & Proto.NODATA) !== 0, promptAcksOverTcp, 'TCP: DATA skipped exactly when ACKs are prompt');
      // A narrower offer gets an answer within it, not the cached one.
      const narrow = await answer({ path }, { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x3f });
      assert.equal(narrow.type, 'optneg');
      if (narrow.type === 'optneg') assert.equal(narrow.protocol & ~0x3f, 0);
      assert.deepEqual(await answer({ path }), unix1);
    } finally {
      for (const d of doors) await d.stop(100);
      dir.remove();
    }
  });

  it('rejects at CONNECT with the exact SMFIR_REPLYCODE and sees the client from the packet and macros', async () => {
    let seen: Transaction | undefined;
    const { port } = await start(['connect'], (stage, tx) => {
      seen = tx;
      return verdict({ action: 'reject', reply: { code: 554, enhanced: '5.7.1', lines: ['You are 100% blocked'] } });
    });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    assert.deepEqual(await c.reply(), { type: 'replycode', text: '554 5.7.1 You are 100%% blocked' });
    assert.deepEqual(seen?.session.client, { ip: '192.0.2.7', port: 40000 });
    assert.equal(seen?.session.clientName, 'client.test');
    assert.deepEqual(seen?.session.destination, { ip: '127.0.0.1', port: 25 });
    assert.equal(seen?.session.destinationSource, 'milter');
    assert.equal(seen?.session.door, 'milter');
  });

  it('sends no reply to MACRO, ABORT, NR_* events; exactly one to each replied command; edits only at EOM', async () => {
    const { port, policy } = await start(['rcpt', 'data', 'eom'], (stage, tx) => {
      if (stage === 'rcpt' && tx.envelope.rcpt === 'bad@example.net') return verdict({ action: 'reject', reply: { code: 550, enhanced: '5.1.1', lines: ['No such user'] } });
      if (stage === 'data') return verdict({ action: 'continue', mutations: [{ kind: 'add', name: 'X-Sluice', value: 'checked by sluice' }] });
      if (stage === 'eom') return verdict({ action: 'continue', mutations: [{ kind: 'change', name: 'Subject', value: 'tagged', index: 1 }] });
      return undefined;
    }, { headers: true });
    const c = await client(port);
    const proto = await negotiated(c);
    assert.notEqual(proto & Proto.NR_CONN, 0);
    assert.notEqual(proto & Proto.NR_HELO, 0);
    assert.notEqual(proto & Proto.NR_MAIL, 0);
    assert.notEqual(proto & Proto.NR_HDR, 0);
    assert.notEqual(proto & Proto.NR_BODY, 0);
    // Postfix pipelines a lot in one write once NR_* is negotiated.
    postfixConnect(c);
    c.send({ type: 'macro', stage: 'H', macros: [] }, { type: 'helo', name: 'client.test' }, { type: 'macro', stage: 'M', macros: [['{mail_addr}', 'a@example.com']] }, { type: 'mail', args: ['<a@example.com>', 'size=125'] });
    await c.nothingFor(150);
    c.send({ type: 'macro', stage: 'R', macros: [] }, { type: 'rcpt', args: ['<bad@example.net>'] });
    assert.deepEqual(await c.reply(), { type: 'replycode', text: '550 5.1.1 No such user' });
    c.send({ type: 'rcpt', args: ['<good@example.net>', 'NOTIFY=NEVER'] });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'macro', stage: 'T', macros: [['i', 'Q1']] }, { type: 'data' });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send(
      { type: 'macro', stage: 'L', macros: [['i', 'Q1']] },
      { type: 'header', name: 'From', value: ' a@example.com' },
      { type: 'header', name: 'Subject', value: ' hello' },
      { type: 'macro', stage: 'B', macros: [['i', 'Q1']] },
      { type: 'body', chunk: Buffer.from('body line\r\n') },
    );
    await c.nothingFor(100);
    c.send({ type: 'macro', stage: 'E', macros: [['i', 'Q1']] }, { type: 'eob', chunk: Buffer.alloc(0) });
    const eom = await c.untilFinal();
    assert.deepEqual(eom, [
      { type: 'chgheader', index: 1, name: 'Subject', value: ' tagged' },
      { type: 'addheader', name: 'X-Sluice', value: ' checked by sluice' },
      { type: 'continue' },
    ]);
    c.send({ type: 'abort' }, { type: 'abort' });
    await c.nothingFor(100);
    const eomTx = policy.calls.find((x) => x.stage === 'eom')?.tx;
    assert.deepEqual(eomTx?.envelope.rcpts, ['good@example.net']);
    assert.equal(eomTx?.envelope.mailFrom, 'a@example.com');
    assert.deepEqual(eomTx?.envelope.mailParams, { SIZE: '125' });
    assert.deepEqual(eomTx?.message.headers, [
      ['From', 'a@example.com'],
      ['Subject', 'hello'],
    ]);
    assert.equal(eomTx?.message.size, 'From: a@example.com\r\nSubject: hello\r\n\r\nbody line\r\n'.length);
  });

  it('keeps messages apart on one connection: ABORT after each, RSET mid-message, state never reused', async () => {
    const { port, policy } = await start(['header', 'eom'], (stage, tx) => (stage === 'eom' && tx.message.headers.length > 1 ? verdict({ action: 'reject' }) : undefined));
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' });
    const message = async (headers: string[]): Promise<MilterReply[]> => {
      c.send({ type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] });
      for (const h of headers) {
        c.send({ type: 'header', name: h, value: ' v' });
        assert.deepEqual(await c.reply(), { type: 'continue' });
      }
      c.send({ type: 'eob', chunk: Buffer.alloc(0) });
      return await c.untilFinal();
    };
    assert.deepEqual(await message(['A']), [{ type: 'continue' }]);
    c.send({ type: 'abort' });
    assert.deepEqual(await message(['B']), [{ type: 'continue' }], 'headers of message 1 must not leak into message 2');
    c.send({ type: 'abort' });
    // RSET in the middle of a message: MAIL, RCPT, one header, then ABORT, then a new message.
    c.send({ type: 'mail', args: ['<x@y>'] }, { type: 'rcpt', args: ['<z@w>'] }, { type: 'header', name: 'Partial', value: ' 1' });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'abort' });
    assert.deepEqual(await message(['C']), [{ type: 'continue' }]);
    c.send({ type: 'abort' });
    assert.deepEqual(await message(['D', 'E']), [{ type: 'reject' }]);
    c.send({ type: 'abort' }, { type: 'abort' }, { type: 'quit' });
    assert.ok(await c.closedWithin(1000));
    const eoms = policy.calls.filter((x) => x.stage === 'eom').map((x) => x.tx);
    assert.deepEqual(
      eoms.map((t) => t.message.headers.map(([n]) => n)),
      [['A'], ['B'], ['C'], ['D', 'E']],
    );
    assert.deepEqual(
      eoms.map((t) => t.session.messages),
      [0, 1, 2, 3],
    );
    assert.deepEqual(
      eoms.map((t) => t.message.size),
      [8, 8, 8, 14],
      'sizes are per message ("A: v\\r\\n" + blank line), never accumulated',
    );
  });

  it('renders discard, quarantine (hold) and accept verdicts', async () => {
    const { port } = await start(['mail', 'eom'], (stage, tx) => {
      if (stage === 'mail' && tx.envelope.mailFrom === 'discard@x') return verdict({ action: 'discard' });
      if (stage === 'mail' && tx.envelope.mailFrom === 'ok@x') return verdict({ action: 'accept' });
      if (stage === 'eom' && tx.envelope.mailFrom === 'hold@x') return verdict({ action: 'quarantine', reason: 'looks odd', mutations: [{ kind: 'add', name: 'X-Held', value: 'yes' }] });
      return undefined;
    });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<discard@x>'] });
    assert.deepEqual(await c.reply(), { type: 'discard' });
    c.send({ type: 'abort' }, { type: 'mail', args: ['<ok@x>'] });
    assert.deepEqual(await c.reply(), { type: 'accept' });
    c.send({ type: 'abort' }, { type: 'mail', args: ['<hold@x>'] });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'rcpt', args: ['<r@x>'] }, { type: 'header', name: 'From', value: ' hold@x' }, { type: 'eob', chunk: Buffer.alloc(0) });
    assert.deepEqual(await c.untilFinal(), [{ type: 'addheader', name: 'X-Held', value: ' yes' }, { type: 'quarantine', reason: 'looks odd' }, { type: 'continue' }]);
  });

  it('repeats a header-stage refusal at end of message and judges nothing more for that message', async () => {
    const { port, policy } = await start(['header', 'eom'], (stage, tx) =>
      stage === 'header' && tx.message.headers.at(-1)?.[0] === 'X-Bad' ? verdict({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['bad header'] } }) : undefined,
    );
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }, { type: 'header', name: 'X-Bad', value: ' 1' });
    assert.deepEqual(await c.reply(), { type: 'replycode', text: '550 5.7.1 bad header' });
    c.send({ type: 'header', name: 'X-Other', value: ' 2' });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'eob', chunk: Buffer.alloc(0) });
    assert.deepEqual(await c.untilFinal(), [{ type: 'replycode', text: '550 5.7.1 bad header' }]);
    assert.deepEqual(
      policy.calls.map((x) => x.stage),
      ['header'],
    );
  });

  it('sends PROGRESS while a slow verdict runs, then exactly one final reply', async () => {
    const { port } = await start(['eom'], async () => {
      await new Promise((r) => setTimeout(r, 550));
      return verdict({ action: 'tempfail', reply: { code: 451, enhanced: '4.7.1', lines: ['later'] } });
    }, { progressIntervalMs: 150 });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }, { type: 'eob', chunk: Buffer.alloc(0) });
    const rs = await c.untilFinal(2000);
    const final = rs.pop();
    assert.deepEqual(final, { type: 'replycode', text: '451 4.7.1 later' });
    assert.ok(rs.length >= 2, `expected progress packets, got ${rs.length}`);
    assert.ok(rs.every((r) => r.type === 'progress'));
    await c.nothingFor(200);
  });

  it('feeds scanners the reconstructed message (headers, blank line, body) and reduces the scan result before eom rules', async () => {
    const seen: Buffer[] = [];
    const scanners: ScannerSet = {
      enabled: true,
      start(): ScanJob {
        const parts: Buffer[] = [];
        return {
          write: (b) => parts.push(Buffer.from(b)),
          end: async () => {
            seen.push(Buffer.concat(parts));
            return { results: { virus: { found: true, name: 'Eicar-Test', scanner: 'fake' }, skipped: [], failed: {} } };
          },
          abort: () => undefined,
          backlog: 0,
          drained: async () => undefined,
        };
      },
      close: async () => undefined,
    };
    const { port } = await start(['eom'], (_s, tx) => (tx.message.scan.virus?.found ? verdict({ action: 'reject', reply: { code: 554, enhanced: '5.7.0', lines: [`virus ${tx.message.scan.virus.name ?? ''}`] } }) : undefined), { scanners });
    const c = await client(port);
    const proto = await negotiated(c);
    assert.equal(proto & (Proto.NOBODY | Proto.NOHDRS | Proto.NR_BODY), 0);
    assert.notEqual(proto & Proto.HDR_LEADSPC, 0);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] });
    c.send({ type: 'header', name: 'From', value: ' a@b' }, { type: 'header', name: 'X-Fold', value: ' one\n\ttwo' }, { type: 'eoh' });
    c.send({ type: 'body', chunk: Buffer.from('line 1\r\n') });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'body', chunk: Buffer.from('line 2\r\n') });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'eob', chunk: Buffer.alloc(0) });
    assert.deepEqual(await c.untilFinal(), [{ type: 'replycode', text: '554 5.7.0 virus Eicar-Test' }]);
    assert.equal(seen[0]?.toString(), 'From: a@b\r\nX-Fold: one\r\n\ttwo\r\n\r\nline 1\r\nline 2\r\n');
  });

  it('a scanner lagging more than SCAN_BACKLOG_LIMIT holds the next packets until it has drained', async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((r) => (release = r));
    let backlog = 0;
    const scanners: ScannerSet = {
      enabled: true,
      start: (): ScanJob => ({
        write: () => void (backlog = SCAN_BACKLOG_LIMIT + 1),
        end: async () => ({ results: { skipped: [], failed: {} } }),
        abort: () => undefined,
        get backlog() {
          return backlog;
        },
        drained: () => released.then(() => void (backlog = 0)),
      }),
      close: async () => undefined,
    };
    const { port } = await start(['eom'], () => undefined, { scanners });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }, { type: 'header', name: 'From', value: ' a@b' }, { type: 'eoh' });
    c.send({ type: 'body', chunk: Buffer.from('line 1\r\n') });
    assert.deepEqual(await c.reply(), { type: 'continue' }, 'the chunk that fills the backlog is answered');
    c.send({ type: 'body', chunk: Buffer.from('line 2\r\n') });
    await c.nothingFor(300); // the next chunk waits for the scanner
    release();
    assert.deepEqual(await c.reply(), { type: 'continue' });
    c.send({ type: 'eob', chunk: Buffer.alloc(0) });
    assert.equal((await c.untilFinal()).at(-1)?.type, 'continue');
  });

  it('stops copying to scanners past maxScanBytes (the crossing chunk still goes, so scanners see the overflow)', async () => {
    let written = 0;
    const scanners = {
      enabled: true,
      maxScanBytes: 100,
      start: (): ScanJob => ({ write: (b: Buffer) => void (written += b.length), end: async () => ({ results: { skipped: ['clamd'], failed: {} } }), abort: () => undefined, backlog: 0, drained: async () => undefined }),
      close: async () => undefined,
    };
    const { port, policy } = await start(['eom'], () => undefined, { scanners });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] }, { type: 'header', name: 'From', value: ' a@b' }, { type: 'eoh' });
    for (let i = 0; i < 5; i++) {
      c.send({ type: 'body', chunk: Buffer.alloc(60, 0x61) });
      assert.deepEqual(await c.reply(), { type: 'continue' });
    }
    c.send({ type: 'eob', chunk: Buffer.alloc(0) });
    assert.deepEqual(await c.untilFinal(), [{ type: 'continue' }]);
    const headerBytes = 'From: a@b\r\n\r\n'.length;
    assert.equal(written, headerBytes + 60 * 2, 'header block + two chunks: the second crosses 100 bytes, the rest are not copied');
    const eom = policy.calls.find((x) => x.stage === 'eom')?.tx;
    assert.equal(eom?.message.size, headerBytes + 300, 'the size still counts every byte');
    assert.deepEqual(eom?.message.scan.skipped, ['clamd']);
  });

  it('closes the connection on a zero length, a huge length, an unknown command, a command before OPTNEG; others go on', async () => {
    const { port, logger } = await start(['rcpt'], () => undefined, { maxPacket: 65536 + 1024 });
    const healthy = await client(port);
    await negotiated(healthy);
    postfixConnect(healthy);
    const hostile: Buffer[] = [
      Buffer.from('00000000', 'hex'),
      Buffer.from('7fffffff42', 'hex'),
      Buffer.concat([encodeCommand(POSTFIX_OPTNEG), Buffer.from('000000017a', 'hex')]),
      encodeCommand({ type: 'helo', name: 'early' }),
      Buffer.concat([encodeCommand(POSTFIX_OPTNEG), Buffer.from('0000000343', 'hex'), Buffer.from('x\0')]),
    ];
    for (const bytes of hostile) {
      const c = await client(port);
      c.send(bytes);
      assert.ok(await c.closedWithin(1000), `not closed after ${bytes.toString('hex')}`);
    }
    assert.ok(logger.records.filter((r) => r.msg === 'closing milter connection').length >= hostile.length);
    // A truncated packet just waits (no reply, no close); the healthy session is untouched.
    const trunc = await client(port);
    trunc.send(Buffer.from('0000000d4f000000', 'hex'));
    await trunc.nothingFor(100);
    assert.equal(await trunc.closedWithin(10), false);
    healthy.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<a@b>'] }, { type: 'rcpt', args: ['<c@d>'] });
    assert.deepEqual(await healthy.reply(), { type: 'continue' });
  });

  it('closes a connection that stays silent past the read timeout', async () => {
    const { port, logger } = await start([], () => undefined, { readTimeoutMs: 300 });
    const c = await client(port);
    await negotiated(c);
    assert.ok(await c.closedWithin(1500));
    assert.ok(logger.records.some((r) => (r.obj as { reason?: string }).reason === 'read timeout'));
  });

  it('handles QUIT_NC: a new SMTP session on the same connection starts with CONNECT', async () => {
    const { port, policy } = await start(['connect'], (_s, tx) => (tx.session.client.ip === '192.0.2.66' ? verdict({ action: 'tempfail' }) : undefined));
    const c = await client(port);
    await negotiated(c);
    c.send({ type: 'connect', hostname: '[192.0.2.66]', family: 'inet', port: 1, address: '192.0.2.66' });
    assert.deepEqual(await c.reply(), { type: 'tempfail' });
    c.send({ type: 'quitNc' });
    await c.nothingFor(50);
    c.send({ type: 'connect', hostname: 'ok', family: 'inet6', port: 2, address: 'IPv6:2001:db8::5' });
    assert.deepEqual(await c.reply(), { type: 'continue' });
    assert.equal(policy.calls[0]?.tx.session.clientName, 'unknown');
    assert.deepEqual(policy.calls[1]?.tx.session.client, { ip: '2001:db8::5', port: 2 });
  });

  it('hands verdict effects to the effect runner with the transaction they were decided on', async () => {
    const ran: Array<{ effects: readonly Effect[]; sender?: string }> = [];
    const effects: EffectRunner = { run: (e, tx) => void ran.push({ effects: e, ...(tx.envelope.mailFrom !== undefined ? { sender: tx.envelope.mailFrom } : {}) }) };
    const hook: Effect = { kind: 'hook', hook: 'notify', rule: 'r1', env: { A: '1' } };
    const { port } = await start(['mail'], () => verdict({ action: 'reject', effects: [hook] }), { effects });
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'mail', args: ['<s@x>'] });
    assert.deepEqual(await c.reply(), { type: 'reject' });
    assert.deepEqual(ran, [{ effects: [hook], sender: 's@x' }]);
  });

  it('judges auth rules at MAIL from the auth macros', async () => {
    const { port, policy } = await start(['auth'], (stage, tx) => (stage === 'auth' && tx.session.auth?.user === 'mallory' ? verdict({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['not you'] } }) : undefined));
    const c = await client(port);
    await negotiated(c);
    postfixConnect(c);
    c.send({ type: 'helo', name: 'h' }, { type: 'macro', stage: 'M', macros: [['{auth_authen}', 'mallory'], ['{auth_type}', 'PLAIN']] }, { type: 'mail', args: ['<a@b>'] });
    assert.deepEqual(await c.reply(), { type: 'replycode', text: '550 5.7.1 not you' });
    assert.deepEqual(policy.calls[0]?.tx.session.auth, { user: 'mallory', mechanism: 'PLAIN' });
  });

  it('listens on a unix socket with mode 0660 and replaces a stale socket file, never a regular file', async () => {
    const dir = makeTempDir();
    try {
      const path = join(dir.path, 'milter.sock');
      // A stale socket: bound by a process that was then killed, so nobody unlinked it.
      spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`], { timeout: 5000 });
      assert.ok(existsSync(path), 'the stale socket file is still there');
      const d = createMilterDoor({ listen: `unix:${path}` }, testDeps(scriptedPolicy([], () => undefined)));
      await d.start();
      assert.equal(statSync(path).mode & 0o777, 0o660);
      const c = await MilterTestClient.open({ path });
      c.send(POSTFIX_OPTNEG);
      assert.equal((await c.reply()).type, 'optneg');
      c.close();
      // A second door on the live socket must refuse, not steal it.
      await assert.rejects(createMilterDoor({ listen: `unix:${path}` }, testDeps(scriptedPolicy([], () => undefined))).start(), /in use/);
      await d.stop(100);
      const file = join(dir.path, 'plain');
      writeFileSync(file, 'x');
      await assert.rejects(createMilterDoor({ listen: `unix:${file}` }, testDeps(scriptedPolicy([], () => undefined))).start(), /not a socket/);
    } finally {
      dir.remove();
    }
  });
});
