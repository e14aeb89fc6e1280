import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError } from '../../lib/core/errors.js';
import {
  decodeCommand,
  decodeReply,
  encodeCommand,
  encodePacket,
  encodeReply,
  PacketReader,
  type MilterCommand,
  type MilterPacket,
  type MilterReply,
} from '../../lib/milter/milter-codec.js';
import { Action, MacroStage, Proto } from '../../lib/milter/milter-constants.js';
import { MACRO_REQUESTS, negotiate } from '../../lib/milter/milter-negotiate.js';
import { renderReplyCode } from '../../lib/milter/milter-reply.js';
import { foldValue, parseParams, stripBrackets } from '../../lib/milter/milter-session.js';
import type { PolicyNeeds } from '../../lib/core/policy-port.js';
import type { RuleStage } from '../../lib/core/stage.js';

function one(buf: Buffer, max = 1 << 20): MilterPacket {
  const r = new PacketReader(max);
  r.push(buf);
  const p = r.next();
  assert.ok(p && !(p instanceof ProtocolError), 'expected a packet');
  return p;
}

const hex = (b: Buffer): string => b.toString('hex');

/** fast-check records have a null prototype; compare them as plain objects. */
function plain<T>(v: T): T {
  if (Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(plain) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) as T;
  return v;
}

describe('milter/milter-codec framing', () => {
  it('frames packets as uint32 length (code + payload), code, payload', () => {
    assert.equal(hex(encodePacket(0x63)), '0000000163');
    assert.equal(hex(encodePacket(0x48, Buffer.from('x\0'))), '00000003487800');
  });

  it('reassembles packets split at every byte position and several packets in one read', () => {
    const stream = Buffer.concat([
      encodeCommand({ type: 'macro', stage: 'C', macros: [['j', 'mx'], ['{daemon_addr}', '127.0.0.1']] }),
      encodeCommand({ type: 'connect', hostname: 'localhost', family: 'inet', port: 35224, address: '127.0.0.1' }),
      encodeCommand({ type: 'abort' }),
    ]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new PacketReader();
      const got: number[] = [];
      for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
        r.push(part);
        for (let p = r.next(); p !== undefined; p = r.next()) {
          assert.ok(!(p instanceof ProtocolError));
          got.push(p.code);
        }
      }
      assert.deepEqual(got, [0x44, 0x43, 0x41], `cut at ${cut}`);
      assert.equal(r.buffered, 0);
    }
  });

  it('waits for a truncated packet instead of guessing', () => {
    const r = new PacketReader();
    r.push(Buffer.from('0000000548', 'hex'));
    assert.equal(r.next(), undefined);
    r.push(Buffer.from('6162', 'hex'));
    assert.equal(r.next(), undefined);
  });

  it('refuses a zero length and a length over the cap before buffering the payload (sticky error)', () => {
    const zero = new PacketReader();
    zero.push(Buffer.from('00000000', 'hex'));
    const e = zero.next();
    assert.ok(e instanceof ProtocolError);
    assert.match(e.message, /below the minimum of 1/);
    const big = new PacketReader(65536);
    big.push(Buffer.from('7fffffff4200', 'hex'));
    const e2 = big.next();
    assert.ok(e2 instanceof ProtocolError);
    assert.match(e2.message, /exceeds the limit of 65536/);
    assert.equal(big.buffered, 0);
    big.push(Buffer.alloc(1000));
    assert.equal(big.buffered, 0, 'nothing is kept after the error');
    assert.ok(big.next() instanceof ProtocolError);
  });
});

describe('milter/milter-codec commands', () => {
  it('decodes the OPTNEG Postfix 3.7 sends', () => {
    const p = one(Buffer.from('0000000d4f00000006000001ff001fffff', 'hex'));
    assert.deepEqual(decodeCommand(p), { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff });
    assert.ok(decodeCommand({ code: 0x4f, payload: Buffer.alloc(8) }) instanceof ProtocolError);
  });

  it('decodes CONNECT liberally: IPv4, IPv6 with and without "IPv6:", unix, unknown', () => {
    const c = (payload: Buffer): unknown => decodeCommand({ code: 0x43, payload });
    assert.deepEqual(c(Buffer.concat([Buffer.from('localhost\0'), Buffer.from('348998', 'hex'), Buffer.from('127.0.0.1\0')])), {
      type: 'connect',
      hostname: 'localhost',
      family: 'inet',
      port: 35224,
      address: '127.0.0.1',
    });
    for (const a of ['IPv6:2001:db8::1', 'ipv6:2001:db8::1', '2001:db8::1']) {
      assert.deepEqual(c(Buffer.concat([Buffer.from('[2001:db8::1]\0'), Buffer.from('360019', 'hex'), Buffer.from(a + '\0')])), {
        type: 'connect',
        hostname: '[2001:db8::1]',
        family: 'inet6',
        port: 25,
        address: '2001:db8::1',
      });
    }
    assert.deepEqual(c(Buffer.concat([Buffer.from('localhost\0L\0\0'), Buffer.from('/run/x.sock\0')])), {
      type: 'connect',
      hostname: 'localhost',
      family: 'unix',
      port: 0,
      address: '/run/x.sock',
    });
    assert.deepEqual(c(Buffer.from('host\0U')), { type: 'connect', hostname: 'host', family: 'unknown', port: 0, address: '' });
    assert.ok(c(Buffer.from('host\0Z')) instanceof ProtocolError);
    assert.ok(c(Buffer.from('host')) instanceof ProtocolError);
    assert.ok(c(Buffer.from('host\x004\x00')) instanceof ProtocolError, 'port cut short');
  });

  it('decodes MACRO with any stage char and an empty list, MAIL with the null sender, ESMTP args', () => {
    assert.deepEqual(decodeCommand({ code: 0x44, payload: Buffer.from('L') }), { type: 'macro', stage: 'L', macros: [] });
    assert.deepEqual(decodeCommand({ code: 0x44, payload: Buffer.from('Mi\0Q1\0{auth_authen}\0bob\0') }), {
      type: 'macro',
      stage: 'M',
      macros: [
        ['i', 'Q1'],
        ['{auth_authen}', 'bob'],
      ],
    });
    assert.ok(decodeCommand({ code: 0x44, payload: Buffer.alloc(0) }) instanceof ProtocolError);
    assert.deepEqual(decodeCommand({ code: 0x4d, payload: Buffer.from('\0') }), { type: 'mail', args: [''] });
    assert.deepEqual(decodeCommand({ code: 0x4d, payload: Buffer.from('<a@example.com>\0size=125\0SIZE=200\0') }), { type: 'mail', args: ['<a@example.com>', 'size=125', 'SIZE=200'] });
    assert.deepEqual(decodeCommand({ code: 0x4c, payload: Buffer.from('X-Multi\0line1\n\tline2\0') }), { type: 'header', name: 'X-Multi', value: 'line1\n\tline2' });
    assert.deepEqual(decodeCommand({ code: 0x45, payload: Buffer.from('tail') }), { type: 'eob', chunk: Buffer.from('tail') });
    assert.ok(decodeCommand({ code: 0x7a, payload: Buffer.alloc(0) }) instanceof ProtocolError, 'unknown command byte');
  });

  const str = fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0'));
  const nonEmpty = str.filter((s) => s.length > 0);
  const command: fc.Arbitrary<MilterCommand> = fc.oneof(
    fc.record({ type: fc.constant('optneg' as const), version: fc.nat(), actions: fc.nat(), protocol: fc.nat() }),
    fc.record({ type: fc.constant('macro' as const), stage: fc.constantFrom('C', 'H', 'M', 'R', 'T', 'L', 'N', 'B', 'E', 'U'), macros: fc.array(fc.tuple(str, str), { maxLength: 5 }) }),
    fc.record({ type: fc.constant('connect' as const), hostname: str, family: fc.constantFrom('inet' as const, 'inet6' as const, 'unix' as const), port: fc.integer({ min: 0, max: 65535 }), address: str.filter((s) => !/^ipv6:/i.test(s)) }),
    fc.record({ type: fc.constant('connect' as const), hostname: str, family: fc.constant('unknown' as const), port: fc.constant(0), address: fc.constant('') }),
    fc.record({ type: fc.constant('helo' as const), name: str }),
    fc.record({ type: fc.constant('mail' as const), args: fc.array(str, { minLength: 1, maxLength: 4 }) }),
    fc.record({ type: fc.constant('rcpt' as const), args: fc.array(str, { minLength: 1, maxLength: 4 }) }),
    fc.record({ type: fc.constant('header' as const), name: nonEmpty, value: str }),
    fc.record({ type: fc.constant('body' as const), chunk: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)) }),
    fc.record({ type: fc.constant('eob' as const), chunk: fc.uint8Array({ maxLength: 30 }).map((u) => Buffer.from(u)) }),
    fc.record({ type: fc.constant('unknown' as const), command: str }),
    fc.constantFrom<MilterCommand>({ type: 'data' }, { type: 'eoh' }, { type: 'abort' }, { type: 'quit' }, { type: 'quitNc' }),
  );

  it('property: decode(encode(command)) = command', () => {
    fc.assert(
      fc.property(command, (c) => {
        // Trailing empty strings in an argv cannot be told apart from the terminator; keep at least the first.
        if ((c.type === 'mail' || c.type === 'rcpt') && c.args.length > 1 && c.args[c.args.length - 1] === '') return;
        assert.deepEqual(decodeCommand(one(encodeCommand(c))), plain(c));
      }),
      { numRuns: 2000 },
    );
  });

  it('property: arbitrary bytes never throw and never buffer past the cap', () => {
    const cap = 4096;
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 20 }), (chunks) => {
        const r = new PacketReader(cap);
        for (const c of chunks) {
          r.push(Buffer.from(c));
          for (let p = r.next(); p !== undefined && !(p instanceof ProtocolError); p = r.next()) {
            assert.ok(p.payload.length < cap);
            const d = decodeCommand(p);
            assert.ok(d instanceof ProtocolError || typeof d.type === 'string');
          }
          assert.ok(r.buffered <= cap + 4 + 600, `buffered ${r.buffered}`);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('property: any payload for any command byte decodes to a value or a ProtocolError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 }), (code, payload) => {
        const d = decodeCommand({ code, payload: Buffer.from(payload) });
        assert.ok(d instanceof ProtocolError || typeof d.type === 'string');
        const r = decodeReply({ code, payload: Buffer.from(payload) });
        assert.ok(r instanceof ProtocolError || typeof r.type === 'string');
      }),
      { numRuns: 3000 },
    );
  });
});

describe('milter/milter-codec replies', () => {
  it('encodes every reply with the exact bytes of the spec', () => {
    const cases: Array<[MilterReply, string]> = [
      [{ type: 'accept' }, '0000000161'],
      [{ type: 'continue' }, '0000000163'],
      [{ type: 'discard' }, '0000000164'],
      [{ type: 'reject' }, '0000000172'],
      [{ type: 'tempfail' }, '0000000174'],
      [{ type: 'skip' }, '0000000173'],
      [{ type: 'progress' }, '0000000170'],
      [{ type: 'replycode', text: '550 5.7.1 no' }, '0000000e79' + Buffer.from('550 5.7.1 no\0').toString('hex')],
      [{ type: 'addheader', name: 'X-A', value: ' b' }, '0000000868' + Buffer.from('X-A\0 b\0').toString('hex')],
      [{ type: 'insheader', index: 1, name: 'X', value: 'v' }, '0000000969' + '00000001' + Buffer.from('X\0v\0').toString('hex')],
      [{ type: 'chgheader', index: 2, name: 'Subject', value: '' }, '0000000e6d' + '00000002' + Buffer.from('Subject\0\0').toString('hex')],
      [{ type: 'addrcpt', address: '<x@y>' }, '000000072b' + Buffer.from('<x@y>\0').toString('hex')],
      [{ type: 'delrcpt', address: '<x@y>' }, '000000072d' + Buffer.from('<x@y>\0').toString('hex')],
      [{ type: 'quarantine', reason: 'virus' }, '0000000771' + Buffer.from('virus\0').toString('hex')],
      [{ type: 'setsymlist', stage: 2, names: 'i' }, '000000076c' + '00000002' + Buffer.from('i\0').toString('hex')],
    ];
    for (const [r, h] of cases) assert.equal(hex(encodeReply(r)), h, r.type);
  });

  it('encodes the OPTNEG answer with macro lists appended (SMFIM stage, names, NUL)', () => {
    const b = encodeReply({ type: 'optneg', version: 6, actions: 0x31, protocol: 0x100, macroLists: [{ stage: MacroStage.ENVFROM, names: 'i {auth_authen}' }] });
    assert.equal(hex(b), '000000214f' + '00000006' + '00000031' + '00000100' + '00000002' + Buffer.from('i {auth_authen}\0').toString('hex'));
  });

  it('refuses to frame a NUL inside a string (a programming error, never peer input)', () => {
    assert.throws(() => encodeReply({ type: 'addheader', name: 'X', value: 'a\0b' }), TypeError);
  });

  const str = fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0'));
  const reply: fc.Arbitrary<MilterReply> = fc.oneof(
    fc.constantFrom<MilterReply>({ type: 'accept' }, { type: 'continue' }, { type: 'discard' }, { type: 'reject' }, { type: 'tempfail' }, { type: 'skip' }, { type: 'progress' }, { type: 'shutdown' }),
    fc.record({ type: fc.constant('replycode' as const), text: str }),
    fc.record({ type: fc.constant('addheader' as const), name: str, value: str }),
    fc.record({ type: fc.constantFrom('insheader' as const, 'chgheader' as const), index: fc.nat(), name: str, value: str }),
    fc.record({ type: fc.constantFrom('addrcpt' as const, 'delrcpt' as const), address: str }),
    fc.record({ type: fc.constantFrom('chgfrom' as const, 'addrcptPar' as const), address: str, args: str }),
    fc.record({ type: fc.constant('quarantine' as const), reason: str }),
    fc.record({ type: fc.constant('setsymlist' as const), stage: fc.nat(), names: str }),
    fc.record({
      type: fc.constant('optneg' as const),
      version: fc.nat(),
      actions: fc.nat(),
      protocol: fc.nat(),
      macroLists: fc.array(fc.record({ stage: fc.nat(), names: str }), { maxLength: 7 }),
    }),
  );

  it('property: decodeReply(encodeReply(reply)) = reply', () => {
    fc.assert(
      fc.property(reply, (r) => {
        assert.deepEqual(decodeReply(one(encodeReply(r))), plain(r));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('milter/milter-reply REPLYCODE text', () => {
  it('renders single and multi-line replies with CRLF between lines and no terminator', () => {
    assert.deepEqual(renderReplyCode({ code: 550, enhanced: '5.7.1', lines: ['Go away'] }, 'reject'), { ok: true, text: '550 5.7.1 Go away' });
    assert.deepEqual(renderReplyCode({ code: 451, enhanced: '4.7.1', lines: ['a', 'b'] }, 'tempfail'), { ok: true, text: '451-4.7.1 a\r\n451 4.7.1 b' });
  });
  it('doubles percent signs and guards text starting with a digit when there is no enhanced code', () => {
    assert.deepEqual(renderReplyCode({ code: 550, lines: ['100% sure'] }, 'reject'), { ok: true, text: '550 100%% sure'.replace('550 ', '550 5.0.0 ') });
    assert.deepEqual(renderReplyCode({ code: 550, lines: ['spam'] }, 'reject'), { ok: true, text: '550 spam' });
  });
  it('refuses replies Postfix would treat as a configuration error', () => {
    assert.equal(renderReplyCode({ code: 250, lines: ['ok'] }, 'reject').ok, false);
    assert.equal(renderReplyCode({ code: 550, lines: ['x'] }, 'tempfail').ok, false);
    assert.equal(renderReplyCode({ code: 550, enhanced: '4.7.1', lines: ['x'] }, 'reject').ok, false);
    assert.equal(renderReplyCode({ code: 550, lines: Array.from({ length: 33 }, () => 'x') }, 'reject').ok, false);
  });
});

describe('milter/milter-session helpers', () => {
  it('strips angle brackets and parses ESMTP params with upper-cased keys', () => {
    assert.equal(stripBrackets('<a@example.com>'), 'a@example.com');
    assert.equal(stripBrackets('<>'), '');
    assert.equal(stripBrackets('a@example.com'), 'a@example.com');
    assert.deepEqual(parseParams(['size=125', 'BODY=8BITMIME', 'SMTPUTF8']), { SIZE: '125', BODY: '8BITMIME', SMTPUTF8: '' });
  });
  it('folds multi-line header values with LF + whitespace only, adding the leading space under HDR_LEADSPC', () => {
    assert.equal(foldValue('a\r\nb', false), 'a\n\tb');
    assert.equal(foldValue('a\n  b', true), ' a\n  b');
    assert.equal(foldValue(' x', true), ' x');
    assert.equal(foldValue('x\0y', false), 'xy');
  });
});

describe('milter/milter-negotiate', () => {
  const needs = (stages: RuleStage[], extra: Partial<PolicyNeeds> = {}): PolicyNeeds => ({ stages: new Set(stages), headers: false, scan: false, spf: false, dnsLists: new Set(), ...extra });
  const postfix = { version: 6, actions: 0x1ff, protocol: 0x1fffff };

  it('by default answers CONNECT..DATA and leaves headers, EOH and body (cleanup-side events) unanswered or skipped', () => {
    const n = negotiate(postfix, { needs: needs(['rcpt']), scanners: false });
    assert.ok(!(n instanceof ProtocolError));
    assert.equal(n.protocol, Proto.NOHDRS | Proto.NR_HDR | Proto.NOEOH | Proto.NR_EOH | Proto.NOBODY | Proto.NR_BODY | Proto.NOUNKNOWN | Proto.NR_UNKN);
    // An eom rule (it may read the size): headers and body received, still without replies.
    const e = negotiate(postfix, { needs: needs(['rcpt', 'eom']), scanners: false });
    assert.ok(!(e instanceof ProtocolError));
    assert.equal(e.protocol, Proto.NR_HDR | Proto.HDR_LEADSPC | Proto.NOEOH | Proto.NR_EOH | Proto.NR_BODY | Proto.NOUNKNOWN | Proto.NR_UNKN);
    // eom rules that do not read the size (the example ruleset: locks, scanner verdicts, a trace header): only
    // the end of message comes, and Postfix sends neither headers nor body.
    const s = negotiate(postfix, { needs: needs(['rcpt', 'data', 'eom'], { size: false }), scanners: false });
    assert.ok(!(s instanceof ProtocolError));
    assert.equal(s.protocol, Proto.NOHDRS | Proto.NR_HDR | Proto.NOEOH | Proto.NR_EOH | Proto.NOBODY | Proto.NR_BODY | Proto.NOUNKNOWN | Proto.NR_UNKN);
    // The same rules reading the size get headers and body.
    const z = negotiate(postfix, { needs: needs(['rcpt', 'data', 'eom'], { size: true }), scanners: false });
    assert.ok(!(z instanceof ProtocolError));
    assert.equal(z.protocol & (Proto.NOHDRS | Proto.NOBODY), 0);
    // Scanners read the message whatever the rules read.
    const c = negotiate(postfix, { needs: needs(['rcpt', 'eom'], { size: false }), scanners: true });
    assert.ok(!(c instanceof ProtocolError));
    assert.equal(c.protocol & (Proto.NOHDRS | Proto.NOBODY), 0);
    // Header rules get headers (and their replies), but no body when nothing reads the size.
    const hs = negotiate(postfix, { needs: needs(['header', 'eom'], { headers: true, size: false }), scanners: false });
    assert.ok(!(hs instanceof ProtocolError));
    assert.equal(hs.protocol & (Proto.NOHDRS | Proto.NR_HDR | Proto.NOBODY), Proto.NOBODY);
    // Header and eoh rules get their replies.
    const h = negotiate(postfix, { needs: needs(['header', 'eoh']), scanners: false });
    assert.ok(!(h instanceof ProtocolError));
    assert.equal(h.protocol & (Proto.NR_HDR | Proto.NOHDRS | Proto.NOEOH | Proto.NR_EOH), 0);
  });

  it('without prompt ACKs (TCP without the native addon) never skips DATA nor leaves it unanswered, with or without noReply (the reply that keeps Postfix from stalling)', () => {
    for (const noReply of [false, true]) {
      for (const stages of [[], ['data', 'eom']] as RuleStage[][]) {
        const n = negotiate(postfix, { needs: needs(stages, { refuses: new Set() }), scanners: false }, { noReply, delayReject: true });
        assert.ok(!(n instanceof ProtocolError));
        assert.equal(n.protocol & (Proto.NODATA | Proto.NR_DATA), 0, `noReply ${noReply}, stages ${stages.join(',')}`);
      }
    }
  });

  it('with prompt ACKs (a unix socket, or TCP with TCP_QUICKACK) skips DATA (NODATA) when no DATA rule can refuse and the message is looked at after DATA anyway', () => {
    const unix = { promptAcks: true, delayReject: true };
    const skips = (n: ReturnType<typeof negotiate>): boolean => !(n instanceof ProtocolError) && (n.protocol & Proto.NODATA) !== 0;
    // The example ruleset's shape: a trace header at DATA, rules at eom, refusals everywhere but DATA.
    assert.ok(skips(negotiate(postfix, { needs: needs(['rcpt', 'data', 'eom'], { refuses: new Set(['rcpt', 'eom']) }), scanners: false }, unix)));
    assert.ok(skips(negotiate(postfix, { needs: needs(['rcpt'], { refuses: new Set(['rcpt']) }), scanners: true }, unix)), 'scanners read the message after DATA');
    // A DATA rule that may refuse must be answered at DATA.
    assert.ok(!skips(negotiate(postfix, { needs: needs(['data', 'eom'], { refuses: new Set(['data']) }), scanners: false }, unix)));
    // Nothing after DATA: DATA stays, and is answered with ACCEPT so Postfix sends nothing more of the message.
    assert.ok(!skips(negotiate(postfix, { needs: needs(['rcpt'], { refuses: new Set(['rcpt']) }), scanners: false }, unix)));
    // A policy that does not say where it refuses is taken to refuse anywhere.
    assert.ok(!skips(negotiate(postfix, { needs: needs(['data', 'eom']), scanners: false }, unix)));
    // An MTA that does not offer NODATA is not asked for it.
    assert.ok(!skips(negotiate({ ...postfix, protocol: postfix.protocol & ~Proto.NODATA }, { needs: needs(['data', 'eom'], { refuses: new Set() }), scanners: false }, unix)));
  });

  it('with noReply: answers version 6, asks only for offered bits, and appends the macro lists', () => {
    const n = negotiate(postfix, { needs: needs(['connect', 'rcpt']), scanners: false }, { noReply: true });
    assert.ok(!(n instanceof ProtocolError));
    assert.equal(n.version, 6);
    assert.equal(n.actions, Action.ADDHDRS | Action.CHGHDRS | Action.QUARANTINE | Action.SETSYMLIST);
    assert.equal(n.protocol & ~postfix.protocol, 0);
    assert.equal(n.protocol & Proto.NR_CONN, 0, 'connect rules need a connect reply');
    assert.equal(n.protocol & Proto.NR_RCPT, 0);
    assert.notEqual(n.protocol & Proto.NR_HELO, 0);
    assert.notEqual(n.protocol & Proto.NR_MAIL, 0);
    assert.notEqual(n.protocol & Proto.NOBODY, 0, 'no scanners, no eom rules: no body');
    assert.notEqual(n.protocol & Proto.NOHDRS, 0);
    assert.deepEqual(n.macroLists, MACRO_REQUESTS);
  });

  it('asks for headers (leading space intact) and body with SKIP when scanners run', () => {
    const n = negotiate(postfix, { needs: needs(['eom']), scanners: true }, { noReply: true });
    assert.ok(!(n instanceof ProtocolError));
    assert.equal(n.protocol & (Proto.NOHDRS | Proto.NOBODY | Proto.NR_BODY), 0);
    assert.notEqual(n.protocol & Proto.SKIP, 0);
    assert.notEqual(n.protocol & Proto.HDR_LEADSPC, 0);
    assert.notEqual(n.protocol & Proto.NR_HDR, 0, 'no header rules: headers without replies');
  });

  it('never requests bits the MTA did not offer, adapts to older versions, refuses version < 2', () => {
    const n = negotiate({ version: 2, actions: 0x0f, protocol: 0x3f }, { needs: needs(['eom']), scanners: true }, { noReply: true });
    assert.ok(!(n instanceof ProtocolError));
    assert.equal(n.version, 2);
    assert.equal(n.actions & ~0x0f, 0);
    assert.equal(n.protocol & ~0x3f, 0);
    assert.deepEqual(n.macroLists, []);
    assert.ok(negotiate({ version: 1, actions: 0, protocol: 0 }, { needs: needs([]), scanners: false }) instanceof ProtocolError);
  });
});
