import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { requirePeer } from '../helpers/ci-guard.js';
import { haproxyAvailable, startHaproxy, waitForPort, type HaproxyHandle } from '../helpers/haproxy.js';
import { cliMain } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const SMTP_SINK_BIN = '/usr/sbin/smtp-sink';
import { startByteRelay, type ByteRelay, type RelayEvent } from '../helpers/intercept-relay.js';
import { freePort } from '../helpers/ports.js';

/**
 * client ──► haproxy (send-proxy / send-proxy-v2) ──► sluice listener (proxy mode) ──► upstream echo server.
 * Asserts the client address sluice reports is the client's (not haproxy's) and that bytes go both ways.
 */
describe('integration: HAProxy PROXY protocol in front of the proxy-mode listener', function () {
  this.timeout(30000);
  let haproxy: HaproxyHandle | undefined;
  let relay: ByteRelay | undefined;
  let upstream: net.Server | undefined;
  const events: RelayEvent[] = [];
  const seenByUpstream: string[] = [];
  const ports = { v1: 0, v2: 0, v2crc: 0, v6: 0, sluice: 0, upstream: 0 };

  before(async function () {
    requirePeer(this, haproxyAvailable(), 'haproxy');
    ports.upstream = await freePort();
    upstream = net.createServer((s) => {
      s.on('error', () => undefined);
      s.write('220 upstream ready\r\n');
      s.on('data', (d: Buffer) => {
        seenByUpstream.push(d.toString('latin1'));
        s.write(`250 got ${d.length}\r\n`);
      });
    });
    await new Promise<void>((r) => upstream?.listen(ports.upstream, '127.0.0.1', r));
    ports.sluice = await freePort();
    relay = await startByteRelay(
      { listen: { ip: '127.0.0.1', port: ports.sluice }, mode: 'proxy', upstream: { ip: '127.0.0.1', port: ports.upstream }, proxyTrusted: ['127.0.0.1/32'] },
      (e) => events.push(e),
    );
    ports.v1 = await freePort();
    ports.v2 = await freePort();
    ports.v2crc = await freePort();
    ports.v6 = await freePort('::1');
    const be = (name: string, opt: string): string => `backend ${name}\n  server sluice 127.0.0.1:${ports.sluice} ${opt}`;
    haproxy = await startHaproxy(
      [
        `frontend f1\n  bind 127.0.0.1:${ports.v1}\n  default_backend b1`,
        be('b1', 'send-proxy'),
        `frontend f2\n  bind 127.0.0.1:${ports.v2}\n  default_backend b2`,
        be('b2', 'send-proxy-v2'),
        `frontend f3\n  bind 127.0.0.1:${ports.v2crc}\n  unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt\n  default_backend b3`,
        be('b3', 'send-proxy-v2 proxy-v2-options crc32c,unique-id'),
        `frontend f6\n  bind [::1]:${ports.v6}\n  default_backend b2`,
      ].join('\n'),
      [
        { host: '127.0.0.1', port: ports.v1 },
        { host: '127.0.0.1', port: ports.v2 },
        { host: '127.0.0.1', port: ports.v2crc },
        { host: '::1', port: ports.v6 },
      ],
    );
  });

  after(async () => {
    await haproxy?.stop();
    await relay?.close();
    await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  });

  /** Connects from `localAddress`, reads the banner, sends one line, returns the client endpoint and the replies. */
  async function session(host: string, port: number, localAddress: string): Promise<{ local: { ip: string; port: number }; text: string }> {
    const before = events.length;
    const s = net.connect({ host, port, localAddress });
    await once(s, 'connect');
    const local = { ip: s.localAddress ?? '', port: s.localPort ?? 0 };
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const until = async (re: RegExp): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`timeout waiting for ${re} in ${JSON.stringify(text)}; events ${JSON.stringify(events.slice(before))}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await until(/^220 upstream ready\r\n/);
    s.write('EHLO client.example\r\n');
    await until(/250 got 21\r\n/);
    s.end();
    return { local, text };
  }

  /**
   * The 'relayed' event sluice logged for the session from `client` (the address and port the PROXY header
   * carried). Not simply the last one: startHaproxy's readiness probes also pass through haproxy, and under load
   * their events can land after the test's own.
   */
  async function relayedFor(client: { ip: string; port: number }): Promise<Extract<RelayEvent, { kind: 'relayed' }>> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const e = events.find((x) => x.kind === 'relayed' && x.client.ip === client.ip && x.client.port === client.port);
      if (e && e.kind === 'relayed') return e;
      if (Date.now() > deadline) assert.fail(`no relayed event from ${client.ip}:${client.port}; events ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('send-proxy (v1): sluice sees the client address and port, not haproxy', async () => {
    const { local, text } = await session('127.0.0.1', ports.v1, '127.0.0.23');
    assert.equal(text, '220 upstream ready\r\n250 got 21\r\n');
    const e = await relayedFor({ ip: '127.0.0.23', port: local.port });
    assert.equal(e.source, 'proxy');
    assert.equal(e.proxyVersion, 1);
    assert.deepEqual(e.destination, { ip: '127.0.0.1', port: ports.upstream });
    assert.ok(seenByUpstream.includes('EHLO client.example\r\n'));
  });

  it('send-proxy-v2: sluice sees the client address and port', async () => {
    const { local } = await session('127.0.0.1', ports.v2, '127.0.0.42');
    const e = await relayedFor({ ip: '127.0.0.42', port: local.port });
    assert.equal(e.proxyVersion, 2);
  });

  it('send-proxy-v2 with CRC32C and UNIQUE_ID TLVs: checksum verified, TLVs skipped', async () => {
    const { local } = await session('127.0.0.1', ports.v2crc, '127.0.0.43');
    const e = await relayedFor({ ip: '127.0.0.43', port: local.port });
    assert.ok(e.tlvTypes?.includes(0x03) && e.tlvTypes.includes(0x05), JSON.stringify(e.tlvTypes));
  });

  it('send-proxy-v2 from an IPv6 client: sluice sees ::1', async () => {
    const { local } = await session('::1', ports.v6, '::1');
    const e = await relayedFor({ ip: '::1', port: local.port });
    assert.equal(e.source, 'proxy');
  });

  it('a direct connection without a PROXY header is refused and never reaches the upstream', async () => {
    const before = seenByUpstream.length;
    const n = events.length;
    const s = net.connect({ host: '127.0.0.1', port: ports.sluice });
    s.on('error', () => undefined);
    await once(s, 'connect');
    const local = s.localPort;
    s.write('EHLO direct\r\n');
    await once(s, 'close');
    const e = events.slice(n).find((x) => x.kind === 'refused' && x.client.port === local);
    assert.ok(e && e.kind === 'refused' && e.reason === 'proxy-invalid', JSON.stringify(events.slice(n)));
    assert.equal(seenByUpstream.length, before);
  });
});

/** haproxy (send-proxy-v2) → `sluice run` (intercept door, proxy mode) → smtp-sink, all on loopback. */
describe('integration: HAProxy → sluice run (proxy mode) → smtp-sink', function () {
  this.timeout(30000);
  let haproxy: HaproxyHandle | undefined;
  let sluice: ChildProcess | undefined;
  let sluiceOut = '';
  let sinkProc: ChildProcess | undefined;
  let tmp: { path: string; remove: () => void } | undefined;
  const ports = { front: 0, sluice: 0, sink: 0 };

  before(async function () {
    requirePeer(this, haproxyAvailable(), 'haproxy');
    requirePeer(this, existsSync(SMTP_SINK_BIN) && existsSync(cliMain), 'smtp-sink and the built CLI');
    requirePeer(this, spawnSync('swaks', ['--version']).status === 0, 'swaks');
    tmp = makeTempDir('sluice-hap-');
    chmodSync(tmp.path, 0o755);
    mkdirSync(join(tmp.path, 'dump'), { mode: 0o777 });
    chmodSync(join(tmp.path, 'dump'), 0o777);
    mkdirSync(join(tmp.path, 'rules'));
    writeFileSync(
      join(tmp.path, 'rules', 'nat.rules'),
      'rule nat-header at data: => add header "X-NAT-Received" "from [{client.ip}]:{client.port} [ident-empty]\\n\\tby {proxy.name} with TPROXY id {session.start}.{pid}"\n',
    );
    ports.sink = await freePort();
    ports.sluice = await freePort();
    ports.front = await freePort();
    sinkProc = spawn(SMTP_SINK_BIN, ['-u', 'nobody', '-h', 'sink.test', '-d', join(tmp.path, 'dump', 'm.'), `127.0.0.1:${ports.sink}`, '20'], { stdio: 'ignore' });
    writeFileSync(
      join(tmp.path, 'sluice.yaml'),
      `hostname: gw.test\nstate_dir: ${join(tmp.path, 'state')}\nrules: ${join(tmp.path, 'rules')}\nspf: { enabled: false }\n` +
        `intercept:\n  - listen: 127.0.0.1:${ports.sluice}\n    mode: proxy\n    proxy_trusted: [127.0.0.1]\n    upstream: 127.0.0.1:${ports.sink}\n`,
    );
    sluice = spawn(process.execPath, [cliMain, 'run', '-c', join(tmp.path, 'sluice.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    sluice.stdout?.on('data', (d: Buffer) => (sluiceOut += d.toString()));
    sluice.stderr?.on('data', (d: Buffer) => (sluiceOut += d.toString()));
    await waitForPort('127.0.0.1', ports.sink);
    await waitForPort('127.0.0.1', ports.sluice, 15000);
    haproxy = await startHaproxy(
      `frontend fe\n  bind 127.0.0.1:${ports.front}\n  default_backend be\nbackend be\n  server s 127.0.0.1:${ports.sluice} send-proxy-v2`,
      [{ host: '127.0.0.1', port: ports.front }],
    );
  });

  after(async () => {
    await haproxy?.stop();
    for (const p of [sluice, sinkProc]) {
      if (p && p.exitCode === null) {
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
    }
    tmp?.remove();
  });

  it('X-NAT-Received carries the client address from the PROXY header, not haproxy', async () => {
    if (!tmp) throw new Error('setup failed');
    const r = spawnSync(
      'swaks',
      ['--server', '127.0.0.1', '--port', String(ports.front), '--local-interface', '127.0.0.66', '--from', 'a@client.test', '--to', 'b@server.test', '--helo', 'client.test', '--timeout', '8'],
      { encoding: 'utf8', timeout: 20000 },
    );
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}\n${sluiceOut}`);
    assert.match(r.stdout, /<- {2}220 sink\.test ESMTP/);
    const dump = join(tmp.path, 'dump');
    const deadline = Date.now() + 5000;
    while (readdirSync(dump).length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 25));
    const [file] = readdirSync(dump);
    const msg = readFileSync(join(dump, file ?? ''), 'latin1');
    assert.match(msg, /^X-NAT-Received: from \[127\.0\.0\.66\]:\d+ \[ident-empty\]/m);
    // The sink itself sees sluice (no transparency in proxy mode here).
    assert.match(msg, /^X-Client-Addr: 127\.0\.0\.1$/m);
  });
});
