import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { MessageSpool } from '../../lib/scanners/message-spool.js';
import { makeTempDir } from '../helpers/temp-dir.js';

async function readAll(s: MessageSpool): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s.open()) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('MessageSpool', () => {
  const t = makeTempDir();
  after(() => t.remove());

  it('keeps small messages in memory', async () => {
    const s = new MessageSpool({ capacity: 1000, memoryLimit: 100, dir: t.path, hash: true });
    s.write(Buffer.from('hello '));
    s.write(Buffer.from('world'));
    await s.finish();
    assert.equal(s.path, undefined);
    assert.equal((await readAll(s)).toString(), 'hello world');
    assert.equal(s.digest(), 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9');
    await s.dispose();
  });

  it('spills to a 0600 file past the memory limit and deletes it on dispose', async () => {
    const s = new MessageSpool({ capacity: 10_000, memoryLimit: 10, dir: t.path });
    const data = Buffer.alloc(5000, 0x41);
    for (let i = 0; i < data.length; i += 333) s.write(data.subarray(i, i + 333));
    await s.finish();
    assert.ok(s.path);
    assert.equal(statSync(s.path).mode & 0o777, 0o600);
    assert.ok((await readAll(s)).equals(data), 'spooled bytes differ');
    const p = s.path;
    await s.dispose();
    assert.throws(() => statSync(p));
  });

  it('stops storing at capacity but keeps counting', async () => {
    const s = new MessageSpool({ capacity: 10, memoryLimit: 100, dir: t.path });
    s.write(Buffer.from('0123456789abcdef'));
    await s.finish();
    assert.equal(s.size, 16);
    assert.equal(s.stored, 10);
    assert.equal(s.overflow, true);
    assert.equal((await readAll(s)).toString(), '0123456789');
  });
});
