import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ScanResults } from '../../lib/core/stage.js';
import { acceptRecipient, reduceTransaction, startTransaction, type Transaction } from '../../lib/core/transaction.js';
import { compileRules, MemoryLockStore, PolicyEngine } from '../../lib/policy/index.js';
import { MAX_VERDICT_VALUE, spamStatus, verdictHeaders, virusStatus } from '../../lib/policy/verdict-headers.js';

const NOW = Date.UTC(2026, 0, 5, 12);
const clock = { now: () => NOW };
const none: ScanResults = { skipped: [], failed: {} };
const gtube: ScanResults = { spam: { score: 1000.4, threshold: 5, symbols: ['GTUBE', 'NO_RELAYS'], isSpam: true }, skipped: [], failed: {} };

function eomTx(scan: ScanResults): Transaction {
  let t = startTransaction({ stage: 'connect', door: 'milter', client: { ip: '203.0.113.9', port: 4000 } }, 's1', NOW);
  t = reduceTransaction(t, { stage: 'mail', address: 'a@example.com' });
  t = acceptRecipient(reduceTransaction(t, { stage: 'rcpt', address: 'b@example.net' }));
  t = reduceTransaction(t, { stage: 'scan', results: scan });
  return reduceTransaction(t, { stage: 'eom', size: 100 });
}

describe('policy/verdict-headers', () => {
  it('virus: clean, infected, skipped, failed, not run', () => {
    assert.equal(virusStatus({ virus: { found: false, scanner: 'clamd' }, skipped: [], failed: {} }), 'Clean');
    assert.equal(virusStatus({ virus: { found: true, name: 'Eicar-Signature', scanner: 'clamd' }, skipped: [], failed: {} }), 'Infected (Eicar-Signature)');
    assert.equal(virusStatus({ skipped: ['clamd'], failed: {} }), 'Skipped (too large)');
    assert.equal(virusStatus({ skipped: [], failed: { clamd: 'timeout' } }), 'Unchecked (scanner failed)');
    assert.equal(virusStatus({ skipped: ['spamd'], failed: { filter: 'x' } }), undefined);
  });

  it('spam: SpamAssassin style status and a bare score', () => {
    assert.equal(spamStatus(gtube), 'Yes, score=1000.4 required=5.0 tests=GTUBE,NO_RELAYS');
    assert.equal(spamStatus({ spam: { score: -0.1, threshold: 5, symbols: [], isSpam: false }, skipped: [], failed: {} }), 'No, score=-0.1 required=5.0 tests=none');
    assert.deepEqual(verdictHeaders(gtube), [
      { kind: 'add', name: 'X-Spam-Status', value: 'Yes, score=1000.4 required=5.0 tests=GTUBE,NO_RELAYS' },
      { kind: 'add', name: 'X-Spam-Score', value: '1000.4' },
    ]);
    assert.deepEqual(verdictHeaders({ skipped: ['spamd'], failed: { clamd: 'refused' } }), [
      { kind: 'add', name: 'X-Virus-Status', value: 'Unchecked (scanner failed)' },
      { kind: 'add', name: 'X-Spam-Status', value: 'Skipped (too large)' },
    ]);
    assert.deepEqual(verdictHeaders(none), []);
  });

  it('names are configurable and each header can be turned off', () => {
    const scan: ScanResults = { ...gtube, virus: { found: false, scanner: 'clamd' } };
    assert.deepEqual(
      verdictHeaders(scan, { virus: 'X-AV', spamStatus: false, spamScore: 'X-Score' }).map((m) => `${m.name}: ${m.value}`),
      ['X-AV: Clean', 'X-Score: 1000.4'],
    );
  });

  it('values are one bounded line of printable ASCII whatever the scanners said (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.array(fc.string({ maxLength: 120 }), { maxLength: 40 }), fc.double({ noNaN: false }), (name, symbols, score) => {
        const scan: ScanResults = { virus: { found: true, name, scanner: 'clamd' }, spam: { score, threshold: 5, symbols, isSpam: true }, skipped: [], failed: {} };
        for (const m of verdictHeaders(scan)) {
          assert.match(m.value, /^[\x20-\x7e]*$/);
          assert.ok(m.value.length <= MAX_VERDICT_VALUE + 40, `${m.value.length}`);
        }
      }),
    );
  });

  describe('PolicyEngine verdictHeaders option', () => {
    const providers = () => ({ locks: new MemoryLockStore({ clock }), clock });

    it('appends the headers to an eom verdict that keeps the message, after the rules own mutations', async () => {
      const rs = compileRules([{ file: 't.rules', text: 'rule tag at eom: spam => add header "X-Tagged" "yes"' }]);
      const e = new PolicyEngine(rs, providers(), { verdictHeaders: true });
      const v = await e.evaluate('eom', eomTx(gtube));
      assert.equal(v.action, 'continue');
      assert.deepEqual(v.mutations.map((m) => m.name), ['X-Tagged', 'X-Spam-Status', 'X-Spam-Score']);
    });

    it('adds eom to needs.stages even without eom rules, and the headers come then too', async () => {
      const rs = compileRules([{ file: 't.rules', text: 'rule h at helo: helo == "x" => reject' }]);
      assert.equal(rs.needs.stages.has('eom'), false);
      const e = new PolicyEngine(rs, providers(), { verdictHeaders: { spamScore: false } });
      assert.equal(e.needs.stages.has('eom'), true);
      const v = await e.evaluate('eom', eomTx({ virus: { found: false, scanner: 'clamd' }, ...gtube }));
      assert.deepEqual(v.mutations.map((m) => `${m.name}: ${m.value}`), ['X-Virus-Status: Clean', 'X-Spam-Status: Yes, score=1000.4 required=5.0 tests=GTUBE,NO_RELAYS']);
    });

    it('nothing for reject, tempfail and discard; quarantine and accept get them', async () => {
      for (const [action, want] of [['reject', 0], ['tempfail', 0], ['discard', 0], ['quarantine', 2], ['accept', 2]] as const) {
        const rs = compileRules([{ file: 't.rules', text: `rule r at eom: spam => ${action}` }]);
        const e = new PolicyEngine(rs, providers(), { verdictHeaders: true });
        const v = await e.evaluate('eom', eomTx(gtube));
        assert.equal(v.action, action);
        assert.equal(v.mutations.length, want, action);
      }
    });

    it('off by default; other stages untouched; a bad name is refused at construction', async () => {
      const rs = compileRules([{ file: 't.rules', text: 'rule r at mail: => tag t' }]);
      assert.deepEqual((await new PolicyEngine(rs, providers()).evaluate('eom', eomTx(gtube))).mutations, []);
      assert.deepEqual((await new PolicyEngine(rs, providers(), { verdictHeaders: true }).evaluate('mail', eomTx(gtube))).mutations, []);
      assert.throws(() => new PolicyEngine(rs, providers(), { verdictHeaders: { virus: 'Bad Name:' } }), /not a valid header/);
    });
  });

  describe('session facts for rules', () => {
    it('sessions.client/total from the connect event (default 1/1) and rcpts.total over the session', async () => {
      const rs = compileRules([
        {
          file: 't.rules',
          text: `rule many at connect: sessions.client > 20 => tempfail 421 4.7.0 "Too many connections from {client.ip}"
                 rule total at connect: sessions.total > 100 => tempfail 421 "busy"
                 rule rc at rcpt: rcpts.total >= 2 => tempfail 452 "enough"`,
        },
      ]);
      const e = new PolicyEngine(rs, { locks: new MemoryLockStore({ clock }), clock });
      const base = { stage: 'connect', door: 'intercept', client: { ip: '203.0.113.9', port: 1 } } as const;
      assert.equal((await e.evaluate('connect', startTransaction(base, 'a', NOW))).action, 'continue');
      assert.equal((await e.evaluate('connect', startTransaction({ ...base, sessions: { client: 20, total: 100 } }, 'a', NOW))).action, 'continue');
      const v = await e.evaluate('connect', startTransaction({ ...base, sessions: { client: 21, total: 21 } }, 'a', NOW));
      assert.deepEqual(v.reply, { code: 421, enhanced: '4.7.0', lines: ['Too many connections from 203.0.113.9'] });
      assert.equal((await e.evaluate('connect', startTransaction({ ...base, sessions: { client: 1, total: 101 } }, 'a', NOW))).reply?.lines[0], 'busy');
      // Two recipients in the first message, then a second message: rcpts.total carries over.
      let t = startTransaction(base, 'a', NOW);
      for (const r of ['x@a', 'y@a']) t = acceptRecipient(reduceTransaction(reduceTransaction(t, { stage: 'mail', address: 's@b' }), { stage: 'rcpt', address: r }));
      assert.equal(t.session.rcptsTotal, 2);
      t = reduceTransaction(reduceTransaction(t, { stage: 'mail', address: 's@b' }), { stage: 'rcpt', address: 'z@a' });
      assert.equal(t.envelope.rcpts.length, 0);
      assert.equal((await e.evaluate('rcpt', t)).action, 'tempfail');
    });

    it('RCPTS_TOTAL in the hook environment counts the whole session plus the recipient judged', async () => {
      const rs = compileRules([{ file: 't.rules', text: 'rule h at rcpt: => hook notify' }], { hooks: new Set(['notify']) });
      const e = new PolicyEngine(rs, { locks: new MemoryLockStore({ clock }), clock });
      let t = startTransaction({ stage: 'connect', door: 'intercept', client: { ip: '203.0.113.9', port: 1 } }, 'a', NOW);
      t = acceptRecipient(reduceTransaction(reduceTransaction(t, { stage: 'mail', address: 's@b' }), { stage: 'rcpt', address: 'x@a' }));
      t = reduceTransaction(reduceTransaction(t, { stage: 'mail', address: 's@b' }), { stage: 'rcpt', address: 'y@a' });
      const v = await e.evaluate('rcpt', t);
      const hook = v.effects.find((x) => x.kind === 'hook');
      assert.equal(hook?.kind === 'hook' ? hook.env['RCPTS_TOTAL'] : undefined, '2');
    });
  });
});
