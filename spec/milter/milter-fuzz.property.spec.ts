/**
 * Property: after a normal OPTNEG, whatever packets an MTA (or anything that reached the milter port) sends --
 * valid commands with odd fields, known command bytes with random payloads, unknown command bytes -- cut at any
 * point, the door only ever writes well-framed replies it can decode, closes or keeps serving, never crashes, and
 * stays healthy for the next connection. Real rules at every stage, header edits included.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Door } from '../../lib/daemon/door.js';
import { encodeCommand, type MilterCommand } from '../../lib/milter/milter-codec.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { compileRules, MemoryLockStore, PolicyEngine } from '../../lib/policy/index.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { MilterTestClient, POSTFIX_OPTNEG, testDeps } from '../helpers/milter-client.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/intercept-harness.js';

const RULES = [
  'rule helo at helo: helo ~ /^bad/ => reject 550 5.7.1 "Bad HELO"',
  'rule spam at mail: sender ~ /^spam@/ => reject 550 5.7.1 "Sender refused"',
  'rule trap at rcpt: rcpt ~ /^trap@/ => tempfail 451 4.7.1 "Later"',
  'rule trace at data: => add header "X-Fuzz" "client {client.ip}"',
  'rule subject at header: header.name == "Subject" and header.value ~ /viagra/i => reject 550 5.7.1 "No"',
  'rule big at eom: size > 300 => reject 552 5.3.4 "Too big"',
  '',
].join('\n');

const text = fc.oneof(fc.constantFrom('', 'a', 'bad.example', 'spam@x.example', 'trap@d.example', '<a@b.example>', 'Subject', ' viagra', '\u00e9t\u00e9'), fc.string({ maxLength: 30 }));

const VALID: fc.Arbitrary<MilterCommand> = fc.oneof(
  fc.record({ hostname: text, family: fc.constantFrom('inet' as const, 'inet6' as const, 'unix' as const, 'unknown' as const), port: fc.integer({ min: 0, max: 65535 }), address: fc.constantFrom('192.0.2.1', '2001:db8::1', '/tmp/s', 'not an address', '') }).map((c): MilterCommand => ({ type: 'connect', ...c })),
  text.map((name): MilterCommand => ({ type: 'helo', name })),
  fc.array(text, { maxLength: 3 }).map((args): MilterCommand => ({ type: 'mail', args })),
  fc.array(text, { maxLength: 3 }).map((args): MilterCommand => ({ type: 'rcpt', args })),
  fc.constant<MilterCommand>({ type: 'data' }),
  fc.tuple(text, text).map(([name, value]): MilterCommand => ({ type: 'header', name, value })),
  fc.constant<MilterCommand>({ type: 'eoh' }),
  fc.uint8Array({ maxLength: 200 }).map((b): MilterCommand => ({ type: 'body', chunk: Buffer.from(b) })),
  fc.constant<MilterCommand>({ type: 'eob', chunk: Buffer.alloc(0) }),
  fc.constant<MilterCommand>({ type: 'abort' }),
  fc.constant<MilterCommand>({ type: 'quitNc' }),
  fc.tuple(fc.constantFrom('C', 'H', 'M', 'R', 'T', 'E', 'N'), fc.array(fc.tuple(text, text), { maxLength: 4 })).map(([stage, macros]): MilterCommand => ({ type: 'macro', stage, macros })),
  fc.constant<MilterCommand>(POSTFIX_OPTNEG),
);

/** A well-framed packet with a known or unknown command byte and random payload. */
const RAW = fc.tuple(fc.constantFrom(...'ABCDEHKLMNOQRTUXZ\0\xff'), fc.uint8Array({ maxLength: 60 })).map(([cmd, payload]) => {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length + 1, 0);
  head[4] = cmd.charCodeAt(0);
  return Buffer.concat([head, Buffer.from(payload)]);
});

const PACKETS = fc.array(fc.oneof({ weight: 4, arbitrary: VALID.map((c) => encodeCommand(c)) }, { weight: 1, arbitrary: RAW }), { minLength: 1, maxLength: 16 });

describe('milter door: arbitrary packets after OPTNEG (property)', function () {
  this.timeout(120_000);
  let door: Door | undefined;
  let port = 0;

  before(async () => {
    port = await freePort();
    const policy = new PolicyEngine(compileRules([{ file: 'fuzz.rules', text: RULES }]), { locks: new MemoryLockStore(), clock: SYSTEM_CLOCK }, { proxyName: 'sluice.test' });
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(policy, { limits: { messageSize: 10_000 } }));
    await door.start();
  });
  after(async () => {
    await door?.stop(100);
  });

  it('writes only decodable replies, never crashes, and the next connection is served', async () => {
    let replies = 0;
    await fc.assert(
      fc.asyncProperty(PACKETS, fc.array(fc.nat(), { maxLength: 4 }), async (packets, cuts) => {
        // MilterTestClient throws (an uncaught exception: the test fails) on any reply it cannot frame or decode.
        const c = await MilterTestClient.open({ port });
        c.send(POSTFIX_OPTNEG);
        const optneg = await c.reply();
        assert.equal(optneg.type, 'optneg');
        const negotiated = Buffer.concat(c.received).length;
        const bytes = Buffer.concat(packets);
        const at = [...new Set(cuts.map((n) => n % (bytes.length + 1)))].sort((a, b) => a - b);
        let from = 0;
        for (const n of [...at, bytes.length]) {
          if (n > from) c.send(bytes.subarray(from, n));
          from = Math.max(from, n);
          await new Promise((r) => setImmediate(r));
        }
        await c.closedWithin(60);
        if (Buffer.concat(c.received).length > negotiated) replies++;
        c.close();
        await until(() => door!.activeSessions === 0, 5000, 'the door to end the session');
        // Still healthy: a fresh connection negotiates and gets its CONNECT answered.
        const next = await MilterTestClient.open({ port });
        next.send(POSTFIX_OPTNEG);
        assert.equal((await next.reply()).type, 'optneg');
        next.send({ type: 'connect', hostname: 'h', family: 'inet', port: 25, address: '192.0.2.9' }, { type: 'helo', name: 'ok.example' }, { type: 'mail', args: ['<a@b.example>'] }, { type: 'rcpt', args: ['<c@d.example>'] });
        const rcpt = await next.untilFinal();
        assert.equal(rcpt.at(-1)?.type, 'continue');
        next.close();
        await until(() => door!.activeSessions === 0, 5000, 'the door to end the check session');
      }),
      { numRuns: Number(process.env['FUZZ_RUNS'] ?? 150) },
    );
    // Not vacuous: many runs got replies beyond the OPTNEG answer.
    assert.ok(replies >= 10, `only ${replies} runs got a reply after OPTNEG`);
  });
});
