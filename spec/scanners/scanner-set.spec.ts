import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { createScannerSet, type ConfiguredScannerSet, type ScannerSetOptions } from '../../lib/scanners/scanner-set.js';
import type { ScanMeta } from '../../lib/scanners/scanner.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { clamdAvailable, startClamd, type RunningClamd } from '../helpers/clamd.js';
import { writeScript } from '../helpers/filter-scripts.js';
import { freePort } from '../helpers/ports.js';
import { EICAR, EICAR_SIGNATURE, GTUBE, testMessage } from '../helpers/scan-samples.js';
import { spamdAvailable, startSpamd, type RunningSpamd } from '../helpers/spamd.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const META: ScanMeta = { sessionId: 's1', client: { ip: '192.0.2.10', port: 40000 }, helo: 'client.example.test', sender: 'a@example.test', recipients: ['b@example.test'], destination: { ip: '127.0.0.1', port: 25 } };

async function scan(set: ConfiguredScannerSet, msg: Buffer, chunk = 4096) {
  const job = set.start(META);
  for (let i = 0; i < msg.length; i += chunk) job.write(msg.subarray(i, i + chunk));
  const out = await job.end();
  return { job, out };
}

describe('ScannerSet with real clamd, spamd and a filter command', function () {
  this.timeout(60_000);
  let clamd: RunningClamd | undefined;
  let spamd: RunningSpamd | undefined;
  const dir = makeTempDir('sluice-set-');
  const sets: ConfiguredScannerSet[] = [];
  const make = (o: ScannerSetOptions): ConfiguredScannerSet => {
    const s = createScannerSet(o, NULL_LOGGER);
    sets.push(s);
    return s;
  };

  before(async function () {
    requirePeer(this, clamdAvailable(), 'clamd (/usr/sbin/clamd)');
    requirePeer(this, spamdAvailable(), 'spamd (/usr/sbin/spamd)');
    [clamd, spamd] = await Promise.all([startClamd({ streamMaxLength: '200K' }), startSpamd()]);
  });
  after(async () => {
    for (const s of sets) await s.close();
    await clamd?.stop();
    await spamd?.stop();
    dir.remove();
  });

  const all = (extra: Partial<ScannerSetOptions> = {}): ScannerSetOptions => ({
    clamd: { address: clamd!.socketPath, timeout: 5000, maxSize: 200 * 1024 },
    spamd: { address: spamd!.address, timeout: 10_000, maxSize: 100 * 1024 },
    tempDir: join(dir.path, 'spool'),
    ...extra,
  });

  it('is disabled with no scanner configured', async () => {
    const s = make({});
    assert.equal(s.enabled, false);
    assert.deepEqual((await scan(s, testMessage('x'))).out, { results: { skipped: [], failed: {} } });
  });

  it('reports EICAR from clamd and a ham score from spamd', async () => {
    const s = make(all());
    const { out } = await scan(s, testMessage(`see attachment\n${EICAR}\n`), 13);
    assert.deepEqual(out.results.virus, { found: true, name: `${EICAR_SIGNATURE}.UNOFFICIAL`, scanner: 'clamd' });
    assert.equal(out.results.spam?.isSpam, false);
    assert.deepEqual(out.results.skipped, []);
    assert.deepEqual(out.results.failed, {});
  });

  it('reports GTUBE as spam with symbols, and a clean virus verdict', async () => {
    const s = make(all());
    const { out } = await scan(s, testMessage(`${GTUBE}\n`));
    assert.deepEqual(out.results.virus, { found: false, scanner: 'clamd' });
    assert.deepEqual(out.results.spam, { score: 1000, threshold: 5, symbols: ['GTUBE'], isSpam: true });
  });

  it('applies a configured spam threshold instead of spamd\'s', async () => {
    const s = make(all({ spamd: { address: spamd!.address, timeout: 10_000, maxSize: 100 * 1024, threshold: 2000 } }));
    const { out } = await scan(s, testMessage(`${GTUBE}\n`));
    assert.deepEqual(out.results.spam, { score: 1000, threshold: 2000, symbols: ['GTUBE'], isSpam: false });
  });

  it('lists scanners whose size limit the message passes as skipped, per scanner', async () => {
    const s = make(all());
    const mid = testMessage(('clean text line for padding\n').repeat(5000)); // ~150 KB: over spamd's 100 KB, under clamd's 200 KB
    const r1 = (await scan(s, mid)).out.results;
    assert.deepEqual(r1.skipped, ['spamd']);
    assert.equal(r1.virus?.found, false);
    const big = testMessage(('clean text line for padding\n').repeat(12000)); // ~340 KB: over both
    const r2 = (await scan(s, big, 65536)).out.results;
    assert.deepEqual([...r2.skipped].sort(), ['clamd', 'spamd']);
    assert.deepEqual(r2.failed, {});
  });

  it('records failed scanners (spamd unreachable, clamd gone) without throwing', async () => {
    const port = await freePort();
    const s = make(all({ spamd: { address: `127.0.0.1:${port}`, timeout: 2000, maxSize: 100_000 }, clamd: { address: join(dir.path, 'no.sock'), timeout: 2000, maxSize: 1000 } }));
    const r = (await scan(s, testMessage('x'))).out.results;
    assert.deepEqual(Object.keys(r.failed).sort(), ['clamd', 'spamd']);
    assert.equal(r.virus, undefined);
    assert.equal(r.spam, undefined);
  });

  it('records a failure when clamd is stopped in the middle of a scan', async () => {
    const own = await startClamd();
    try {
      const s = make({ clamd: { address: own.socketPath, timeout: 3000, maxSize: 10_000_000 } });
      const job = s.start(META);
      job.write(testMessage('part one'));
      await new Promise((r) => setTimeout(r, 100));
      own.kill();
      await new Promise((r) => setTimeout(r, 300));
      job.write(Buffer.alloc(100_000, 0x62));
      const r = (await job.end()).results;
      assert.ok(r.failed['clamd'], JSON.stringify(r));
      assert.equal(r.virus, undefined);
    } finally {
      await own.stop();
    }
  });

  it('runs the filter command: reject reply, rewrite, and cleanup on abort', async () => {
    const scripts = join(dir.path, 'scripts');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(scripts, { recursive: true });
    const rej = writeScript(scripts, 'rej.sh', `cat >/dev/null; echo "554 5.7.1 not today, $SENDER" >&2; exit 1`);
    const s1 = make({ filter: { command: [rej], mode: 'pipe', timeout: 5000, maxSize: 1_000_000, tempDir: join(dir.path, 'f1') } });
    const r1 = (await scan(s1, testMessage('x'))).out;
    assert.deepEqual(r1.results.filter, { code: 554, reply: '5.7.1 not today, a@example.test' });
    assert.equal(r1.rewritten, undefined);

    const rw = writeScript(scripts, 'rw.sh', `printf 'X-Scanned: by-filter\\r\\n'; cat`);
    const fdir = join(dir.path, 'f2');
    const s2 = make({ filter: { command: [rw], mode: 'pipe', timeout: 5000, maxSize: 1_000_000, tempDir: fdir } });
    const { job, out } = await scan(s2, testMessage('body'));
    assert.deepEqual(out.results.filter, { code: 0 });
    assert.ok(out.rewritten);
    assert.equal(readFileSync(out.rewritten.path, 'latin1'), 'X-Scanned: by-filter\r\n' + testMessage('body').toString('latin1'));
    job.abort();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(existsSync(out.rewritten.path), false);
    assert.deepEqual(readdirSync(fdir), []);

    const hang = writeScript(scripts, 'hang.sh', `sleep 60`);
    const s3 = make({ filter: { command: [hang], mode: 'file', timeout: 500, maxSize: 1_000_000, tempDir: join(dir.path, 'f3') } });
    const r3 = (await scan(s3, testMessage('x'))).out.results;
    assert.match(r3.failed['filter'] ?? '', /timed out/);
    assert.deepEqual(r3.filter, { code: 451, reply: '4.3.0 Local Error' });
  });

  it('close() lets a scan in progress finish (reload), then refuses nothing it already started', async () => {
    const s = createScannerSet(all(), NULL_LOGGER);
    const job = s.start(META);
    job.write(testMessage(`late\n${EICAR}\n`));
    const closing = s.close();
    await new Promise((r) => setTimeout(r, 100));
    const out = await job.end();
    await closing;
    assert.equal(out.results.virus?.found, true);
    assert.deepEqual(out.results.failed, {});
  });

  it('makes its own private spool directory only at the first spill, and removes it on close', async () => {
    const s = createScannerSet({ spamd: { address: spamd!.address, timeout: 10_000, maxSize: 100 * 1024 }, memoryLimit: 1024 }, NULL_LOGGER);
    assert.equal(s.tempDir, undefined);
    const small = (await scan(s, testMessage('tiny'))).out.results;
    assert.equal(small.spam?.isSpam, false);
    assert.equal(s.tempDir, undefined);
    const r = (await scan(s, testMessage(`${'words words words\n'.repeat(200)}${GTUBE}\n`))).out.results;
    assert.equal(r.spam?.isSpam, true);
    const dirPath = s.tempDir;
    assert.ok(dirPath && existsSync(dirPath));
    const { statSync } = await import('node:fs');
    assert.equal(statSync(dirPath).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dirPath), [], 'the spool file is gone after the scan');
    await s.close();
    assert.equal(existsSync(dirPath), false);
  });

  it('probes clamd, spamd and the filter', async () => {
    const s = make({ ...all(), filter: { command: ['/bin/cat'], mode: 'pipe', timeout: 1000, maxSize: 1000, tempDir: join(dir.path, 'f4') } });
    const p = await s.probe();
    assert.equal(p['clamd']?.ok, true);
    assert.match(p['clamd']?.detail ?? '', /^ClamAV/);
    assert.equal(p['spamd']?.ok, true);
    assert.equal(p['filter']?.ok, true);
  });
});
