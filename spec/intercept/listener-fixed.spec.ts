import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import * as net from 'node:net';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import {
  createInterceptListener,
  type AcceptedConnection,
  type InterceptListener,
  type RefusedConnection,
} from '../../lib/intercept/listener.js';
import { connectUpstream } from '../../lib/intercept/upstream-connect.js';
import { freePort } from '../helpers/ports.js';

async function connectClient(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ host, port });
  await once(s, 'connect');
  return s;
}

describe('intercept listener: fixed mode', () => {
  const listeners: InterceptListener[] = [];
  const sockets: net.Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const l of listeners.splice(0)) await l.close();
  });

  it('hands out the client address and the fixed upstream, and bytes flow after hand-off', async () => {
    const upstream = { ip: '127.0.0.1', port: await freePort() };
    const l = createInterceptListener({ listen: { ip: '127.0.0.1', port: 0 }, mode: 'fixed', upstream }, NULL_LOGGER);
    listeners.push(l);
    await l.listen();
    assert.match(l.address, /^127\.0\.0\.1:\d+$/);
    const got = once(l, 'connection') as Promise<[AcceptedConnection]>;
    const client = await connectClient(l.endpoint?.port ?? 0);
    sockets.push(client);
    client.write('EHLO x\r\n');
    const [c] = await got;
    sockets.push(c.socket);
    assert.equal(c.source, 'fixed');
    assert.deepEqual(c.destination, upstream);
    assert.deepEqual(c.client, { ip: '127.0.0.1', port: client.localPort });
    assert.equal(c.head.length, 0);
    assert.equal(c.transparentSource, undefined);
    const [data] = (await once(c.socket, 'data')) as [Buffer];
    assert.equal(data.toString(), 'EHLO x\r\n');
  });

  it('normalises IPv4-mapped clients on a dual-stack listener', async function () {
    const l = createInterceptListener(
      { listen: { ip: '::', port: 0 }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: 2525 } },
      NULL_LOGGER,
    );
    listeners.push(l);
    await l.listen();
    assert.match(l.address, /^\[::\]:\d+$/);
    const got = once(l, 'connection') as Promise<[AcceptedConnection]>;
    sockets.push(await connectClient(l.endpoint?.port ?? 0, '127.0.0.1'));
    const [c] = await got;
    sockets.push(c.socket);
    assert.equal(c.client.ip, '127.0.0.1');
    assert.equal(c.local.ip, '127.0.0.1');
  });

  it('accepts IPv6 clients', async () => {
    const l = createInterceptListener(
      { listen: { ip: '::1', port: 0 }, mode: 'fixed', upstream: { ip: '::1', port: 2525 }, transparent: true, bindClientPort: true },
      NULL_LOGGER,
    );
    listeners.push(l);
    await l.listen();
    const got = once(l, 'connection') as Promise<[AcceptedConnection]>;
    const client = await connectClient(l.endpoint?.port ?? 0, '::1');
    sockets.push(client);
    const [c] = await got;
    sockets.push(c.socket);
    assert.deepEqual(c.client, { ip: '::1', port: client.localPort });
    assert.deepEqual(c.transparentSource, { ip: '::1', port: client.localPort });
  });

  it('refuses to start when the upstream is the listener itself', async () => {
    const port = await freePort();
    const l = createInterceptListener(
      { listen: { ip: '127.0.0.1', port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port } },
      NULL_LOGGER,
    );
    listeners.push(l);
    await assert.rejects(l.listen(), /loop/);
  });

  it('refuses (reason loop) when the upstream is another of our listeners, and lets the door answer first', async () => {
    const a = createInterceptListener({ listen: { ip: '0.0.0.0', port: 0 }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: 9 } }, NULL_LOGGER);
    listeners.push(a);
    await a.listen();
    const b = createInterceptListener(
      { listen: { ip: '127.0.0.1', port: 0 }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: a.endpoint?.port ?? 0 } },
      NULL_LOGGER,
    );
    listeners.push(b);
    await b.listen();
    let connections = 0;
    b.on('connection', () => connections++);
    const refused = new Promise<RefusedConnection>((resolve) =>
      b.on('refused', (r) => {
        r.end?.('554 5.4.6 loop\r\n');
        resolve(r);
      }),
    );
    const client = await connectClient(b.endpoint?.port ?? 0);
    sockets.push(client);
    const chunks: Buffer[] = [];
    client.on('data', (d: Buffer) => chunks.push(d));
    const r = await refused;
    assert.equal(r.reason, 'loop');
    assert.equal(r.destination?.port, a.endpoint?.port);
    await once(client, 'end');
    assert.equal(Buffer.concat(chunks).toString(), '554 5.4.6 loop\r\n');
    assert.equal(connections, 0);
  });

  it('fails to listen on a port in use with the OS error', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const l = createInterceptListener({ listen: { ip: '127.0.0.1', port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: 25 } }, NULL_LOGGER);
      await assert.rejects(l.listen(), /EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});

describe('connectUpstream (plain)', () => {
  it('connects, and reports refusal and timeout with errno codes', async () => {
    const srv = net.createServer((s) => s.end('220 hi\r\n'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const port = (srv.address() as net.AddressInfo).port;
      const s = await connectUpstream({ ip: '127.0.0.1', port }, { timeoutMs: 2000 });
      const [d] = (await once(s, 'data')) as [Buffer];
      assert.equal(d.toString(), '220 hi\r\n');
      s.destroy();
    } finally {
      srv.close();
    }
    const dead = await freePort();
    await assert.rejects(connectUpstream({ ip: '127.0.0.1', port: dead }, { timeoutMs: 2000 }), { code: 'ECONNREFUSED' });
  });
});
