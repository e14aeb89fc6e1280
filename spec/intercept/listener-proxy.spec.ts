import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import * as net from 'node:net';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import {
  createInterceptListener,
  type AcceptedConnection,
  type InterceptListener,
  type ListenerOptions,
  type RefusedConnection,
} from '../../lib/intercept/listener.js';
import { serializeProxyV2 } from '../../lib/intercept/proxy-protocol.js';

type Outcome = { kind: 'connection'; c: AcceptedConnection } | { kind: 'refused'; r: RefusedConnection };

describe('intercept listener: proxy mode (raw PROXY headers on loopback)', () => {
  const listeners: InterceptListener[] = [];
  const sockets: net.Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const l of listeners.splice(0)) await l.close();
  });

  async function start(extra: Partial<ListenerOptions> = {}): Promise<InterceptListener> {
    const l = createInterceptListener(
      { listen: { ip: '127.0.0.1', port: 0 }, mode: 'proxy', upstream: { ip: '127.0.0.1', port: 2525 }, ...extra },
      NULL_LOGGER,
    );
    listeners.push(l);
    await l.listen();
    return l;
  }

  /** Sends `bytes` (in pieces if asked) and resolves the listener's verdict plus whatever the client received. */
  async function send(l: InterceptListener, pieces: (string | Buffer)[], host = '127.0.0.1'): Promise<{ out: Outcome; received: string; closed: Promise<unknown> }> {
    const outcome = new Promise<Outcome>((resolve) => {
      l.once('connection', (c: AcceptedConnection) => {
        sockets.push(c.socket);
        resolve({ kind: 'connection', c });
      });
      l.once('refused', (r: RefusedConnection) => resolve({ kind: 'refused', r }));
    });
    const s = net.connect({ host, port: l.endpoint?.port ?? 0 });
    sockets.push(s);
    s.on('error', () => undefined);
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    const closed = once(s, 'close');
    await once(s, 'connect');
    for (const p of pieces) {
      s.write(p);
      await new Promise((r) => setTimeout(r, 5));
    }
    const out = await outcome;
    return { out, received: Buffer.concat(got).toString('latin1'), closed };
  }

  it('v1: takes the client from the header and keeps bytes after it as head (split across reads)', async () => {
    const l = await start();
    const { out } = await send(l, ['PROXY TCP4 192.0.2.', '10 198.51.100.1 56324 25\r', '\nEHLO early\r\n']);
    assert.equal(out.kind, 'connection');
    if (out.kind !== 'connection') return;
    assert.deepEqual(out.c.client, { ip: '192.0.2.10', port: 56324 });
    assert.deepEqual(out.c.destination, { ip: '127.0.0.1', port: 2525 });
    assert.equal(out.c.source, 'proxy');
    assert.equal(out.c.peer.ip, '127.0.0.1');
    assert.equal(out.c.proxy?.version, 1);
    // The early bytes are either in head or still in the socket; together they are exact.
    let rest = out.c.head.toString('latin1');
    if (rest.length < 'EHLO early\r\n'.length) {
      const [d] = (await once(out.c.socket, 'data')) as [Buffer];
      rest += d.toString('latin1');
    }
    assert.equal(rest, 'EHLO early\r\n');
  });

  it('v2: TCP6 header with TLVs; destination from the header when no upstream is set', async () => {
    const l = await start({ upstream: undefined });
    const hdr = serializeProxyV2(
      { command: 'proxy', family: 'tcp6', source: { ip: '2001:db8::7', port: 1234 }, destination: { ip: '2001:db8::25', port: 25 }, tlvs: [{ type: 0x05, value: Buffer.from('id-1') }] },
      true,
    );
    const { out } = await send(l, [hdr]);
    assert.equal(out.kind, 'connection');
    if (out.kind !== 'connection') return;
    assert.deepEqual(out.c.client, { ip: '2001:db8::7', port: 1234 });
    assert.deepEqual(out.c.destination, { ip: '2001:db8::25', port: 25 });
    assert.equal(out.c.head.length, 0);
  });

  it('v2 LOCAL: uses the real endpoints (client = the proxy)', async () => {
    const l = await start();
    const { out } = await send(l, [serializeProxyV2({ command: 'local', family: 'unspec' })]);
    assert.equal(out.kind, 'connection');
    if (out.kind !== 'connection') return;
    assert.equal(out.c.client.ip, '127.0.0.1');
    assert.equal(out.c.proxy?.command, 'local');
  });

  const refusals: [string, (string | Buffer)[], string][] = [
    ['a malformed v1 line', ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'], 'proxy-invalid'],
    ['SMTP instead of a header', ['EHLO x\r\n'], 'proxy-invalid'],
    ['v1 UNKNOWN', ['PROXY UNKNOWN\r\n'], 'proxy-unsupported'],
    ['v2 UNSPEC with PROXY command', [Buffer.from('0d0a0d0a000d0a515549540a21000000', 'hex')], 'proxy-unsupported'],
    ['a v2 header with command 2', [Buffer.from('0d0a0d0a000d0a515549540a22110000', 'hex')], 'proxy-invalid'],
  ];
  for (const [name, pieces, reason] of refusals) {
    it(`refuses ${name} (${reason}) without sending a byte`, async () => {
      const l = await start();
      const { out, closed } = await send(l, pieces);
      assert.equal(out.kind, 'refused');
      if (out.kind !== 'refused') return;
      assert.equal(out.r.reason, reason);
      assert.equal(out.r.end, undefined);
      await closed;
    });
  }

  it('refuses an untrusted sender before reading anything', async () => {
    const l = await start({ proxyTrusted: ['10.0.0.0/8'] });
    const { out } = await send(l, ['PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n']);
    assert.equal(out.kind, 'refused');
    if (out.kind === 'refused') assert.equal(out.r.reason, 'proxy-untrusted');
  });

  it('trusts IPv6 loopback by default', async () => {
    const l = createInterceptListener({ listen: { ip: '::1', port: 0 }, mode: 'proxy', upstream: { ip: '::1', port: 2525 } }, NULL_LOGGER);
    listeners.push(l);
    await l.listen();
    const { out } = await send(l, ['PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\n'], '::1');
    assert.equal(out.kind, 'connection');
  });

  it('times out a header that never completes', async () => {
    const l = await start({ proxyHeaderTimeoutMs: 150 });
    const t0 = Date.now();
    const { out, closed } = await send(l, ['PROXY TCP4 1.2.3.4']);
    assert.equal(out.kind, 'refused');
    if (out.kind === 'refused') assert.equal(out.r.reason, 'proxy-timeout');
    assert.ok(Date.now() - t0 >= 140);
    await closed;
  });

  it('refuses a v2 header claiming more than our cap, without waiting for it', async () => {
    const l = await start();
    const { out } = await send(l, [Buffer.from('0d0a0d0a000d0a515549540a2111ffff', 'hex')]);
    assert.equal(out.kind, 'refused');
    if (out.kind === 'refused') assert.equal(out.r.reason, 'proxy-invalid');
  });

  it('refuses a loop: PROXY destination is our own listener', async () => {
    const l = await start({ upstream: undefined });
    const port = l.endpoint?.port ?? 0;
    const { out } = await send(l, [`PROXY TCP4 192.0.2.10 127.0.0.1 1000 ${port}\r\n`]);
    assert.equal(out.kind, 'refused');
    if (out.kind === 'refused') {
      assert.equal(out.r.reason, 'loop');
      assert.equal(typeof out.r.end, 'function');
    }
  });

  it('rejects a bad proxyTrusted entry at start', async () => {
    const l = createInterceptListener({ listen: { ip: '127.0.0.1', port: 0 }, mode: 'proxy', proxyTrusted: ['10.0.0.0/99'] }, NULL_LOGGER);
    await assert.rejects(l.listen(), /proxyTrusted/);
  });
});

describe('intercept listener: pending cap', () => {
  it('refuses connections beyond maxPending while headers are outstanding (busy)', async () => {
    const l = createInterceptListener(
      { listen: { ip: '127.0.0.1', port: 0 }, mode: 'proxy', upstream: { ip: '127.0.0.1', port: 2525 }, maxPending: 2, proxyHeaderTimeoutMs: 2000 },
      NULL_LOGGER,
    );
    await l.listen();
    const socks: net.Socket[] = [];
    try {
      const reasons: string[] = [];
      l.on('refused', (r: RefusedConnection) => reasons.push(r.reason));
      for (let i = 0; i < 3; i++) {
        const s = net.connect({ host: '127.0.0.1', port: l.endpoint?.port ?? 0 });
        s.on('error', () => undefined);
        socks.push(s);
        await once(s, 'connect');
        await new Promise((r) => setTimeout(r, 20));
      }
      const deadline = Date.now() + 2000;
      while (reasons.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(reasons, ['busy']);
    } finally {
      for (const s of socks) s.destroy();
      await l.close();
    }
  });
});
