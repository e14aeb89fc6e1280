/**
 * Fault injection (fakes only where a real peer cannot be made to misbehave on cue): a clamd and a spamd that
 * accept the connection and never answer, or answer garbage. Every case must end in results.failed, on time.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { ClamdClient } from '../../lib/scanners/clamd-client.js';
import { createScannerSet } from '../../lib/scanners/scanner-set.js';
import { SpamdClient } from '../../lib/scanners/spamd-client.js';
import { testMessage } from '../helpers/scan-samples.js';
import { makeTempDir } from '../helpers/temp-dir.js';

async function fakeServer(onConn: (s: Socket) => void): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, server, sockets };
}

describe('scanner faults (injected)', function () {
  this.timeout(20_000);
  const servers: Array<{ server: Server; sockets: Set<Socket> }> = [];
  const dir = makeTempDir();
  after(async () => {
    for (const s of servers) {
      for (const c of s.sockets) c.destroy();
      await new Promise((r) => s.server.close(r));
    }
    dir.remove();
  });
  const fake = async (onConn: (s: Socket) => void): Promise<number> => {
    const f = await fakeServer(onConn);
    servers.push(f);
    return f.port;
  };

  it('clamd that never answers: an error after the timeout', async () => {
    const port = await fake((s) => s.resume());
    const t0 = Date.now();
    const r = await new ClamdClient({ address: `127.0.0.1:${port}`, maxBytes: 1e6, timeoutMs: 400 }).scanBuffer(testMessage('x'));
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.message : '', /no answer/);
    assert.ok(Date.now() - t0 < 2000);
  });

  it('clamd that answers garbage or an endless line: an error, bounded', async () => {
    const p1 = await fake((s) => s.once('data', () => s.end('HELLO WORLD\0')));
    const r1 = await new ClamdClient({ address: `127.0.0.1:${p1}`, maxBytes: 1e6, timeoutMs: 2000 }).scanBuffer(testMessage('x'));
    assert.equal(r1.kind, 'error');
    const p2 = await fake((s) => s.once('data', () => s.write(Buffer.alloc(100_000, 0x41))));
    const r2 = await new ClamdClient({ address: `127.0.0.1:${p2}`, maxBytes: 1e6, timeoutMs: 2000 }).scanBuffer(testMessage('x'));
    assert.deepEqual(r2, { kind: 'error', message: 'clamd reply too long' });
  });

  it('spamd that never answers, or answers without a Spam header: an error', async () => {
    const p1 = await fake((s) => s.resume());
    const msg = testMessage('x');
    const r1 = await new SpamdClient({ address: `127.0.0.1:${p1}`, timeoutMs: 400 }).check(msg, msg.length);
    assert.equal(r1.kind, 'error');
    const p2 = await fake((s) => s.once('data', () => s.end('SPAMD/1.1 0 EX_OK\r\n\r\n')));
    const r2 = await new SpamdClient({ address: `127.0.0.1:${p2}`, timeoutMs: 2000 }).check(msg, msg.length);
    assert.deepEqual(r2, { kind: 'error', message: 'spamd answer without a valid Spam header' });
    const p3 = await fake((s) => s.once('data', () => s.end('SPAMD/1.1 76 Bad header line\r\n\r\n')));
    const r3 = await new SpamdClient({ address: `127.0.0.1:${p3}`, timeoutMs: 2000 }).check(msg, msg.length);
    assert.equal(r3.kind, 'error');
  });

  it('a scanner set with hanging clamd and spamd still ends on time, with both in failed', async () => {
    const port = await fake((s) => s.resume());
    const set = createScannerSet(
      { clamd: { address: `127.0.0.1:${port}`, timeout: 300, maxSize: 1e6 }, spamd: { address: `127.0.0.1:${port}`, timeout: 300, maxSize: 1e6 }, tempDir: dir.path },
      NULL_LOGGER,
    );
    const job = set.start({ sessionId: 's', client: { ip: '192.0.2.1', port: 1 }, recipients: [] });
    job.write(testMessage('hello'));
    const t0 = Date.now();
    const out = await job.end();
    assert.ok(Date.now() - t0 < 3000);
    assert.deepEqual(Object.keys(out.results.failed).sort(), ['clamd', 'spamd']);
    await set.close();
  });

  it('abort() during a scan frees the job; end() still resolves', async () => {
    const port = await fake((s) => s.resume());
    const set = createScannerSet({ clamd: { address: `127.0.0.1:${port}`, timeout: 5000, maxSize: 1e6 } }, NULL_LOGGER);
    const job = set.start({ sessionId: 's', client: { ip: '192.0.2.1', port: 1 }, recipients: [] });
    job.write(testMessage('hello'));
    const p = job.end();
    job.abort();
    const out = await p;
    assert.ok(out.results.failed['clamd']);
    await set.close();
  });
});
