import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import * as net from 'node:net';
import { requirePeer } from '../helpers/ci-guard.js';
import { freePort } from '../helpers/ports.js';
import { loadNative, type NativeSockopt } from '../../lib/intercept/native-sockopt.js';
import { connectUpstream } from '../../lib/intercept/upstream-connect.js';

/** The native helper on loopback (IP_TRANSPARENT needs CAP_NET_ADMIN: root). TPROXY itself is in spec/e2e. */
describe('native socket helper (loopback)', () => {
  let native: NativeSockopt;
  before(function () {
    const n = loadNative();
    requirePeer(this, n !== undefined, 'native helper (npx node-gyp rebuild -C native)');
    requirePeer(this, process.getuid?.() === 0, 'root (CAP_NET_ADMIN for IP_TRANSPARENT)');
    if (n) native = n;
  });

  it('throws TypeErrors for bad arguments and errno-coded Errors for syscalls', () => {
    assert.throws(() => native.getOriginalDestination('x' as unknown as number, 4), TypeError);
    assert.throws(() => native.getOriginalDestination(0, 5 as 4), TypeError);
    assert.throws(() => native.createTransparentListener('not-an-ip', 1, 4, 5), TypeError);
    assert.throws(() => native.connectTransparent('127.0.0.1', 70000, '127.0.0.1', 1, 4), TypeError);
    assert.throws(() => native.getOriginalDestination(0, 4), { code: 'ENOTSOCK' });
    assert.throws(() => native.getOriginalDestination(987654, 4), { code: 'EBADF' });
  });

  it('SO_ORIGINAL_DST without NAT reports ENOENT (no conntrack entry) or the local address', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
    const c = net.connect({ host: '127.0.0.1', port });
    const [s] = await accepted;
    const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
    try {
      const d = native.getOriginalDestination(fd, 4);
      assert.deepEqual(d, { ip: '127.0.0.1', port });
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOENT');
    }
    c.destroy();
    s.destroy();
    srv.close();
  });

  it('createTransparentListener gives a listening fd Node can serve on (IPv4 and IPv6)', async () => {
    for (const [ip, fam] of [['127.0.0.1', 4], ['::1', 6]] as const) {
      const port = await freePort(ip);
      const fd = native.createTransparentListener(ip, port, fam, 16);
      const srv = net.createServer((s) => s.end('hi\r\n'));
      await new Promise<void>((r) => srv.listen({ fd }, r));
      const c = net.connect({ host: ip, port });
      const [d] = (await once(c, 'data')) as [Buffer];
      assert.equal(d.toString(), 'hi\r\n');
      c.destroy();
      await new Promise((r) => srv.close(r));
    }
  });

  it('createTransparentListener reports EADDRINUSE', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    try {
      assert.throws(() => native.createTransparentListener('127.0.0.1', port, 4, 16), { code: 'EADDRINUSE' });
    } finally {
      srv.close();
    }
  });

  it('connectUpstream with transparentSource binds the given source address and port', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const srcPort = await freePort('127.0.0.77');
    const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
    const up = await connectUpstream({ ip: '127.0.0.1', port }, { transparentSource: { ip: '127.0.0.77', port: srcPort }, timeoutMs: 2000 });
    const [s] = await accepted;
    assert.equal(s.remoteAddress, '127.0.0.77');
    assert.equal(s.remotePort, srcPort);
    s.write('ping');
    const [d] = (await once(up, 'data')) as [Buffer];
    assert.equal(d.toString(), 'ping');
    up.destroy();
    s.destroy();
    srv.close();
  });

  it('transparent connect reports ECONNREFUSED, and mixed families are refused before connecting', async () => {
    const dead = await freePort();
    await assert.rejects(connectUpstream({ ip: '127.0.0.1', port: dead }, { transparentSource: { ip: '127.0.0.9', port: 0 }, timeoutMs: 2000 }), {
      code: 'ECONNREFUSED',
    });
    await assert.rejects(connectUpstream({ ip: '::1', port: dead }, { transparentSource: { ip: '127.0.0.9', port: 0 }, timeoutMs: 2000 }), {
      code: 'EAFNOSUPPORT',
    });
  });

  it('waitConnected times out on a descriptor that never becomes writable', async () => {
    // A listening socket is never writable: a stand-in for a SYN that is never answered (the real case is in e2e).
    const fd = native.createTransparentListener('127.0.0.1', await freePort(), 4, 1);
    const t0 = Date.now();
    const code = await new Promise<string | 0>((r) => native.waitConnected(fd, 200, r));
    native.closeFd(fd);
    assert.equal(code, 'ETIMEDOUT');
    assert.ok(Date.now() - t0 >= 190);
  });
});

describe('native helper missing', () => {
  it('modes that need it fail with a message saying how to build it', async () => {
    // A copy of the loaders outside the repo finds no native/build above it.
    const { copyFileSync, mkdirSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { makeTempDir } = await import('../helpers/temp-dir.js');
    const { buildRoot } = await import('../helpers/paths.js');
    const tmp = makeTempDir();
    try {
      writeFileSync(join(tmp.path, 'package.json'), '{"type":"module"}\n');
      mkdirSync(join(tmp.path, 'intercept'));
      mkdirSync(join(tmp.path, 'core'));
      copyFileSync(join(buildRoot, 'lib', 'core', 'native-addon.js'), join(tmp.path, 'core', 'native-addon.js'));
      const copy = join(tmp.path, 'intercept', 'native-sockopt.js');
      copyFileSync(join(buildRoot, 'lib', 'intercept', 'native-sockopt.js'), copy);
      const saved = process.env['SLUICE_NATIVE'];
      delete process.env['SLUICE_NATIVE'];
      try {
        const mod = (await import(copy)) as typeof import('../../lib/intercept/native-sockopt.js');
        assert.equal(mod.loadNative(), undefined);
        assert.throws(() => mod.requireNative('listener mode "tproxy"'), /listener mode "tproxy" needs the native socket helper: .*npx node-gyp rebuild -C native/);
      } finally {
        if (saved !== undefined) process.env['SLUICE_NATIVE'] = saved;
      }
    } finally {
      tmp.remove();
    }
  });
});
