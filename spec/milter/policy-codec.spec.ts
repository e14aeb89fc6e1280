import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError } from '../../lib/core/errors.js';
import { encodePolicyRequest, encodePolicyResponse, PolicyRequestDecoder } from '../../lib/milter/policy-codec.js';
import { cleanActionText, prependAction, replyAction, verdictAction } from '../../lib/milter/policy-action.js';
import { CONTINUE } from '../../lib/core/verdict.js';

describe('policy-codec: Postfix policy delegation framing', () => {
  it('decodes requests split at every byte boundary, several per chunk', () => {
    const wire = Buffer.from('request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b\n\nrequest=smtpd_access_policy\nsender=\n\n');
    for (let split = 0; split <= wire.length; split++) {
      const d = new PolicyRequestDecoder();
      const got = [...d.push(wire.subarray(0, split)), ...d.push(wire.subarray(split))];
      assert.equal(got.length, 2, `split at ${split}`);
      assert.equal(got[0]!.get('protocol_state'), 'RCPT');
      assert.equal(got[1]!.get('sender'), '');
      assert.equal(d.buffered, 0);
    }
  });

  it('keeps the first of duplicated attributes, values may contain "=", CRLF is tolerated', () => {
    const d = new PolicyRequestDecoder();
    const [r] = d.push(Buffer.from('sender=first@x\r\nsender=second@x\r\nccert_subject=CN+3Da=b\r\n\r\n'));
    assert.equal(r!.get('sender'), 'first@x');
    assert.equal(r!.get('ccert_subject'), 'CN+3Da=b');
  });

  it('refuses lines that are not name=value, NUL bytes, and every bound', () => {
    const lim = { maxRequestBytes: 200, maxAttributes: 3, maxLineBytes: 50 };
    assert.throws(() => new PolicyRequestDecoder(lim).push(Buffer.from('garbage\n')), ProtocolError);
    assert.throws(() => new PolicyRequestDecoder(lim).push(Buffer.from('=x\n')), ProtocolError);
    assert.throws(() => new PolicyRequestDecoder(lim).push(Buffer.from('a=\0\n')), ProtocolError);
    assert.throws(() => new PolicyRequestDecoder(lim).push(Buffer.from('a=' + 'x'.repeat(60) + '\n')), /longer than 50/);
    // A long line without newline is refused as soon as it passes the bound, not when it ends.
    assert.throws(() => new PolicyRequestDecoder(lim).push(Buffer.from('a=' + 'x'.repeat(60))), /longer than 50/);
    assert.throws(() => new PolicyRequestDecoder(lim).push(Buffer.from('a=1\nb=2\nc=3\nd=4\n')), /more than 3 attributes/);
    const d = new PolicyRequestDecoder(lim);
    assert.throws(() => {
      for (let i = 0; i < 3; i++) d.push(Buffer.from(`a${i}=${'y'.repeat(45)}\n`));
      d.push(Buffer.from('z=' + 'y'.repeat(45) + '\n'));
    }, /larger than 200|more than 3/);
  });

  it('round-trips any attributes (property)', () => {
    const name = fc.stringMatching(/^[a-z_]{1,20}$/);
    const value = fc.string({ maxLength: 100 }).filter((s) => !/[\n\r\0]/.test(s));
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(name, value), { selector: (t) => t[0], maxLength: 30 }), fc.integer({ min: 1, max: 50 }), (attrs, step) => {
        const wire = Buffer.from(encodePolicyRequest(attrs));
        const d = new PolicyRequestDecoder();
        const out = [];
        for (let i = 0; i < wire.length; i += step) out.push(...d.push(wire.subarray(i, i + step)));
        assert.equal(out.length, 1);
        assert.deepEqual([...out[0]!.entries()], attrs);
      }),
    );
  });

  it('never throws anything but ProtocolError on random bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        const d = new PolicyRequestDecoder({ maxRequestBytes: 1000, maxAttributes: 20, maxLineBytes: 100 });
        try {
          d.push(Buffer.from(bytes));
        } catch (e) {
          assert.ok(e instanceof ProtocolError);
        }
        assert.ok(d.buffered <= 1000);
      }),
    );
  });

  it('encodes the answer block', () => {
    assert.equal(encodePolicyResponse('DUNNO'), 'action=DUNNO\n\n');
    assert.throws(() => encodePolicyResponse('REJECT a\nb'));
  });
});

describe('policy-action: verdict → access(5) action', () => {
  const base = CONTINUE;
  it('renders each verdict', () => {
    assert.equal(verdictAction(base, 'dunno'), 'DUNNO');
    assert.equal(verdictAction({ ...base, action: 'accept' }, 'dunno'), 'DUNNO');
    assert.equal(verdictAction({ ...base, action: 'accept' }, 'ok'), 'OK');
    assert.equal(verdictAction({ ...base, action: 'reject', reply: { code: 554, enhanced: '5.7.1', lines: ['No thanks'] } }, 'dunno'), '554 5.7.1 No thanks');
    assert.equal(verdictAction({ ...base, action: 'reject' }, 'dunno'), '550 5.7.1 Rejected by policy');
    assert.equal(verdictAction({ ...base, action: 'tempfail', reply: { code: 451, enhanced: '4.7.1', lines: ['Greylisted', 'come back'] } }, 'dunno'), '451 4.7.1 Greylisted; come back');
    assert.equal(verdictAction({ ...base, action: 'tempfail' }, 'dunno'), '450 4.7.1 Try again later');
    assert.equal(verdictAction({ ...base, action: 'discard', reason: 'spam trap' }, 'dunno'), 'DISCARD spam trap');
    assert.equal(verdictAction({ ...base, action: 'quarantine', reason: 'virus: Eicar' }, 'dunno'), 'HOLD virus: Eicar');
    assert.equal(verdictAction({ ...base, action: 'quarantine' }, 'dunno'), 'HOLD');
  });

  it('never lets a wrong-class or broken reply through', () => {
    // A reject rendered with a 4xx (or 2xx) code would silently change its meaning: fall back to the default.
    assert.equal(replyAction({ code: 250, lines: ['ok'] }, 5), '550 5.7.1 Rejected by policy');
    assert.equal(replyAction({ code: 451, enhanced: '4.3.0', lines: ['x'] }, 5), '550 5.7.1 Rejected by policy');
    assert.equal(replyAction({ code: 550, lines: ['no enhanced'] }, 5), '550 5.7.1 no enhanced');
    assert.equal(cleanActionText('a\tb\u00e9\u0007c'), 'a b??c');
    assert.equal(cleanActionText('x'.repeat(900)).length, 500);
  });

  it('PREPEND only with a valid header name', () => {
    assert.equal(prependAction('X-Sluice', 'tagged  by\r\nrule'), 'PREPEND X-Sluice: tagged by rule');
    assert.equal(prependAction('Bad Name', 'v'), undefined);
    assert.equal(prependAction('Bad:Name', 'v'), undefined);
  });
});
