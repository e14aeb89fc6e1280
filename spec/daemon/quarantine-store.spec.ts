import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { QuarantineError, QuarantineStore, type QuarantineMeta } from '../../lib/daemon/quarantine-store.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { testMessage } from '../helpers/scan-samples.js';

export const SAMPLE_META: QuarantineMeta = {
  sender: 'a@example.test',
  recipients: ['b@example.test', 'c@example.test'],
  client: { ip: '192.0.2.9', port: 5555 },
  clientName: 'mx.example.test',
  helo: 'mx.example.test',
  sessionId: 'sess-9',
  door: 'intercept',
  reason: 'spam score 12.5',
  rule: 'spam-hold',
  scan: { spam: { score: 12.5, threshold: 5, symbols: ['X'], isSpam: true }, skipped: [], failed: {} },
};

describe('QuarantineStore', () => {
  const t = makeTempDir();
  after(() => t.remove());

  it('stores a message with its sidecar in a private directory, and lists, reads and removes it', async () => {
    const dir = join(t.path, 'q');
    const q = new QuarantineStore(dir);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const msg = testMessage('held');
    const e1 = await q.add(SAMPLE_META, msg, new Date('2026-01-02T03:04:05Z'));
    const e2 = await q.add({ ...SAMPLE_META, reason: 'second' }, Readable.from([msg.subarray(0, 5), msg.subarray(5)]), new Date('2026-01-02T03:04:06Z'));
    assert.match(e1.id, /^20260102T030405Z-[0-9a-f]{12}$/);
    assert.equal(statSync(q.messagePath(e1.id)).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, `${e1.id}.json`)).mode & 0o777, 0o600);
    assert.deepEqual(readFileSync(q.messagePath(e2.id)), msg);
    assert.deepEqual((await q.list()).map((e) => e.reason), ['spam score 12.5', 'second']);
    assert.deepEqual(await q.get(e1.id), { id: e1.id, time: '2026-01-02T03:04:05.000Z', size: msg.length, ...SAMPLE_META });
    const src = join(t.path, 'src.eml');
    writeFileSync(src, msg);
    const e3 = await q.add(SAMPLE_META, { path: src });
    assert.equal(e3.size, msg.length);
    assert.equal(await q.remove(e1.id), true);
    assert.equal(await q.remove(e1.id), false);
    assert.equal((await q.list()).length, 2);
  });

  it('refuses ids that are not its own (no path traversal)', async () => {
    const q = new QuarantineStore(join(t.path, 'q2'));
    assert.throws(() => q.messagePath('../../etc/passwd'), QuarantineError);
    await assert.rejects(q.get('20260102T030405Z-0123456789ab/../x'), QuarantineError);
  });
});
