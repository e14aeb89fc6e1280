import assert from 'node:assert/strict';
import { parseSpamHeader, parseSpamdResponse, parseSymbols, requestHead } from '../../lib/scanners/spamd-protocol.js';

describe('spamd protocol', () => {
  it('builds request heads with Content-length and a safe User only', () => {
    assert.equal(requestHead('SYMBOLS', 12), 'SYMBOLS SPAMC/1.5\r\nContent-length: 12\r\n\r\n');
    assert.equal(requestHead('CHECK', 3, 'bob'), 'CHECK SPAMC/1.5\r\nContent-length: 3\r\nUser: bob\r\n\r\n');
    assert.equal(requestHead('CHECK', 3, 'bob\r\nX: y'), 'CHECK SPAMC/1.5\r\nContent-length: 3\r\n\r\n');
  });

  it('parses responses, Spam headers and symbols', () => {
    const r = parseSpamdResponse('SPAMD/1.1 0 EX_OK\r\nContent-length: 22\r\nSpam: True ; 1003.5 / 5.0\r\n\r\nGTUBE,SLUICE_TEST_SUBJ');
    assert.ok(r);
    assert.equal(r.status, 0);
    assert.deepEqual(parseSpamHeader(r.headers.get('spam') ?? ''), { isSpam: true, score: 1003.5, threshold: 5 });
    assert.deepEqual(parseSymbols(r.body), ['GTUBE', 'SLUICE_TEST_SUBJ']);
    assert.deepEqual(parseSpamHeader('False ; -1.2 / 5.0'), { isSpam: false, score: -1.2, threshold: 5 });
    assert.equal(parseSpamHeader('maybe'), undefined);
    assert.equal(parseSpamdResponse('HTTP/1.0 200 OK\r\n\r\n'), undefined);
    assert.equal(parseSpamdResponse('SPAMD/1.0 76 Bad header line: x')?.status, 76);
    assert.deepEqual(parseSymbols('A,<script>,B'), ['A', 'B']);
  });
});
