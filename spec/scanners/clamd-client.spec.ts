import assert from 'node:assert/strict';
import { ClamdClient } from '../../lib/scanners/clamd-client.js';
import { SCAN_BACKLOG_RESUME } from '../../lib/scanners/scanner.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { EICAR, EICAR_SIGNATURE, testMessage } from '../helpers/scan-samples.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { join } from 'node:path';

describe('ClamdClient against a real clamd', function () {
  this.timeout(60_000);
  let clamd: RunningClamd | undefined;

  before(async function () {
    requirePeer(this, clamdAvailable(), 'clamd (/usr/sbin/clamd, Debian clamav-daemon)');
    clamd = await startClamd({ streamMaxLength: '100K' });
  });
  after(async () => {
    await clamd?.stop();
  });

  const unix = (maxBytes = 100 * 1024): ClamdClient => new ClamdClient({ address: clamd!.socketPath, maxBytes, timeoutMs: 5000 });

  it('answers zPING and zVERSION on the Unix socket and on TCP', async () => {
    assert.equal(await unix().ping(), true);
    assert.match((await unix().version()) ?? '', /^ClamAV \d/);
    const tcp = new ClamdClient({ address: `127.0.0.1:${clamd!.port}`, maxBytes: 1000, timeoutMs: 5000 });
    assert.equal(await tcp.ping(), true);
  });

  it('finds EICAR in a message and names the signature', async () => {
    const r = await unix().scanBuffer(testMessage(`hello\n${EICAR}\nbye`));
    assert.equal(r.kind, 'virus');
    assert.equal(r.kind === 'virus' && r.name, `${EICAR_SIGNATURE}.UNOFFICIAL`);
  });

  it('finds EICAR over TCP when it arrives split across many small writes', async () => {
    const tcp = new ClamdClient({ address: `127.0.0.1:${clamd!.port}`, maxBytes: 100 * 1024, timeoutMs: 5000, chunkSize: 1024 });
    const msg = testMessage(`${'filler line\n'.repeat(500)}${EICAR}\nbye`);
    const s = tcp.startStream();
    for (let i = 0; i < msg.length; i += 7) s.write(msg.subarray(i, i + 7));
    const r = await s.end();
    assert.equal(r.kind, 'virus');
    assert.equal(s.sent, msg.length);
  });

  it('passes a clean message', async () => {
    const r = await unix().scanBuffer(testMessage('just a friendly note'));
    assert.deepEqual(r, { kind: 'clean', bytes: testMessage('just a friendly note').length });
  });

  it('stops at maxBytes and reports a clean over-limit message as skipped, not clean or failed', async () => {
    const big = testMessage('x'.repeat(76) + '\n'.repeat(1) + ('y'.repeat(76) + '\n').repeat(4000));
    assert.ok(big.length > 300_000);
    const s = unix(100 * 1024 - 1).startStream();
    for (let i = 0; i < big.length; i += 16384) s.write(big.subarray(i, i + 16384));
    const r = await s.end();
    assert.equal(r.kind, 'skipped');
    assert.match(r.kind === 'skipped' ? r.reason : '', /too large/);
    assert.equal(s.sent, 100 * 1024 - 1);
    assert.equal(s.total, big.length);
  });

  it('still reports a virus found in the scanned prefix of an over-limit message', async () => {
    const msg = testMessage(`${EICAR}\n${'z'.repeat(76)}\n`.repeat(3000));
    const r = await unix(50_000).scanBuffer(msg);
    assert.equal(r.kind, 'virus');
  });

  it('reports an unreachable clamd as an error', async () => {
    const t = makeTempDir();
    try {
      const c = new ClamdClient({ address: join(t.path, 'nope.sock'), maxBytes: 1000, timeoutMs: 2000 });
      const r = await c.scanBuffer(testMessage('hi'));
      assert.equal(r.kind, 'error');
      assert.equal(await c.ping(), false);
    } finally {
      t.remove();
    }
  });

  it('records a failure when clamd dies in the middle of a scan', async () => {
    const own = await startClamd();
    try {
      const c = new ClamdClient({ address: own.socketPath, maxBytes: 10_000_000, timeoutMs: 5000 });
      const s = c.startStream();
      s.write(testMessage('first part'));
      await new Promise((r) => setTimeout(r, 100));
      own.kill();
      await new Promise((r) => setTimeout(r, 300));
      s.write(Buffer.alloc(200_000, 0x61));
      const r = await s.end();
      assert.equal(r.kind, 'error');
    } finally {
      await own.stop();
    }
  });

  it('reports its backlog while clamd is stopped, and drained() resolves once clamd has taken it down to the resume mark', async () => {
    const own = await startClamd({ streamMaxLength: '25M' });
    try {
      const c = new ClamdClient({ address: own.socketPath, maxBytes: 25 * 1024 * 1024, timeoutMs: 20_000 });
      const s = c.startStream();
      s.write(testMessage('first part'));
      await new Promise((r) => setTimeout(r, 100));
      process.kill(own.pid, 'SIGSTOP');
      let drained = false;
      try {
        for (let i = 0; i < 160; i++) s.write(Buffer.alloc(64 * 1024, 0x61)); // 10 MiB more than clamd can take now
        await new Promise((r) => setTimeout(r, 200));
        assert.ok(s.backlog > 4 * 1024 * 1024, `backlog ${s.backlog} while clamd is stopped`);
        void s.drained().then(() => (drained = true));
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(drained, false, 'drained() waits while clamd takes nothing');
      } finally {
        process.kill(own.pid, 'SIGCONT');
      }
      await s.drained();
      assert.ok(s.backlog <= SCAN_BACKLOG_RESUME, `backlog ${s.backlog} after drained()`);
      const r = await s.end();
      assert.equal(r.kind, 'clean');
    } finally {
      await own.stop();
    }
  });

  it('a clamd that takes no data for its timeout fails the scan, and drained() resolves', async () => {
    const own = await startClamd({ streamMaxLength: '25M' });
    try {
      const c = new ClamdClient({ address: own.socketPath, maxBytes: 25 * 1024 * 1024, timeoutMs: 1000 });
      const s = c.startStream();
      s.write(testMessage('first part'));
      await new Promise((r) => setTimeout(r, 100));
      process.kill(own.pid, 'SIGSTOP');
      try {
        for (let i = 0; i < 160; i++) s.write(Buffer.alloc(64 * 1024, 0x61));
        const t0 = Date.now();
        await s.drained();
        assert.ok(Date.now() - t0 >= 900, 'drained() waited for the timeout');
        const r = await s.end();
        assert.equal(r.kind, 'error');
        assert.match(r.kind === 'error' ? r.message : '', /took no data for 1000 ms/);
      } finally {
        process.kill(own.pid, 'SIGCONT');
      }
    } finally {
      await own.stop();
    }
  });
});
