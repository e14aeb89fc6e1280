import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { SpamdClient } from '../../lib/scanners/spamd-client.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { GTUBE, testMessage } from '../helpers/scan-samples.js';
import { SPAMMY_SUBJECT, spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { freePort } from '../helpers/ports.js';

describe('SpamdClient against a real spamd', function () {
  this.timeout(60_000);
  let spamd: RunningSpamd | undefined;

  before(async function () {
    requirePeer(this, spamdAvailable(), 'spamd (/usr/sbin/spamd, Debian spamd)');
    spamd = await startSpamd();
  });
  after(async () => {
    await spamd?.stop();
  });

  it('answers PING', async () => {
    assert.equal(await new SpamdClient({ address: spamd!.address, timeoutMs: 5000 }).ping(), true);
  });

  it('scores GTUBE as spam with its symbols (SYMBOLS)', async () => {
    const msg = testMessage(`Hello\n${GTUBE}\n`);
    const r = await new SpamdClient({ address: spamd!.address, timeoutMs: 10_000 }).check(msg, msg.length);
    assert.deepEqual(r, { kind: 'scored', isSpam: true, score: 1000, threshold: 5, symbols: ['GTUBE'] });
  });

  it('scores a ham message below the threshold, and a spammy subject as ham at 3.5 (CHECK)', async () => {
    const ham = testMessage('Lunch at noon?');
    const c = new SpamdClient({ address: spamd!.address, timeoutMs: 10_000, method: 'CHECK' });
    assert.deepEqual(await c.check(ham, ham.length), { kind: 'scored', isSpam: false, score: 0, threshold: 5, symbols: [] });
    const m = testMessage('hi', SPAMMY_SUBJECT);
    const r = await c.check(Readable.from([m]), m.length);
    assert.equal(r.kind === 'scored' && r.score, 3.5);
  });

  it('streams a spooled message and returns the report (REPORT)', async () => {
    const msg = testMessage(`x\n${GTUBE}\n`, SPAMMY_SUBJECT);
    const r = await new SpamdClient({ address: spamd!.address, timeoutMs: 10_000, method: 'REPORT' }).check(Readable.from([msg.subarray(0, 10), msg.subarray(10)]), msg.length);
    assert.equal(r.kind, 'scored');
    assert.equal(r.kind === 'scored' && r.score, 1003.5);
  });

  it('reports an error when spamd is not there', async () => {
    const port = await freePort();
    const msg = testMessage('x');
    const r = await new SpamdClient({ address: `127.0.0.1:${port}`, timeoutMs: 2000 }).check(msg, msg.length);
    assert.equal(r.kind, 'error');
  });
});
