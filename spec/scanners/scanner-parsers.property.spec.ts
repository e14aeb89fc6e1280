/** Property tests: no peer or filter output makes a scanner parser throw, and their outputs stay bounded. */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseClamdScanReply } from '../../lib/scanners/clamd-protocol.js';
import { replyFromStderr } from '../../lib/scanners/filter-command.js';
import { parseScannerAddress, ScannerAddressError } from '../../lib/scanners/scanner-address.js';
import { parseSpamHeader, parseSpamdResponse, parseSymbols } from '../../lib/scanners/spamd-protocol.js';

const bytes = fc.string({ unit: 'binary', maxLength: 2000 });

describe('scanner parsers (properties)', () => {
  it('clamd replies: never throw, names bounded', () => {
    fc.assert(
      fc.property(bytes, (s) => {
        const v = parseClamdScanReply(s);
        if (v.kind === 'virus') assert.ok(v.name.length <= 200);
      }),
    );
    fc.assert(fc.property(fc.string({ maxLength: 100 }).filter((n) => n.trim() === n && n.length > 0 && !/[\0\r\n]/.test(n)), (name) => {
      assert.deepEqual(parseClamdScanReply(`stream: ${name} FOUND\0`), { kind: 'virus', name: name.slice(0, 200) });
    }));
  });

  it('spamd responses, Spam headers and symbols: never throw; symbols are rule-name characters only', () => {
    fc.assert(
      fc.property(bytes, (s) => {
        parseSpamdResponse(s);
        parseSpamHeader(s);
        for (const sym of parseSymbols(s)) assert.match(sym, /^[A-Za-z0-9_.-]{1,100}$/);
      }),
    );
    fc.assert(fc.property(fc.boolean(), fc.double({ min: -1000, max: 1000, noNaN: true }), fc.double({ min: -100, max: 100, noNaN: true }), (spam, score, thr) => {
      const h = parseSpamHeader(`${spam ? 'True' : 'False'} ; ${score.toFixed(1)} / ${thr.toFixed(1)}`);
      assert.ok(h);
      assert.equal(h.isSpam, spam);
      assert.equal(h.score, Number(score.toFixed(1)));
    }));
  });

  it('filter stderr: always a 2xx/4xx/5xx code and printable, bounded text', () => {
    fc.assert(
      fc.property(bytes, (s) => {
        const r = replyFromStderr(s);
        assert.ok([2, 4, 5].includes(Math.floor(r.code / 100)));
        assert.match(r.reply, /^[\x20-\x7e]*$/);
        assert.ok(r.reply.length <= 420);
      }),
    );
  });

  it('scanner addresses: parse or a ScannerAddressError, nothing else', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        try {
          parseScannerAddress(s);
        } catch (err) {
          assert.ok(err instanceof ScannerAddressError);
        }
      }),
    );
  });
});
