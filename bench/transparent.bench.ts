/**
 * Transparent-listener benchmark (loopback only, bounded in time):
 *  - PROXY header parsing: v1 and v2 headers parsed per second (pure codec).
 *  - Connection hand-off rate: connections/s from accept to "220" for a plain net.Server (the limit), the
 *    intercept listener in fixed mode, and in proxy mode with a v1 and a v2 header.
 *  - Relay throughput: MB/s through listener + connectUpstream + pipe versus straight to the sink.
 * The servers run in a fresh child process per scenario; the load generator is another fresh process.
 *   node transparent.bench.js                     → table + BENCH_JSON line
 */
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { NULL_LOGGER } from '../lib/core/logger.js';
import { createInterceptListener } from '../lib/intercept/listener.js';
import { parseProxyHeader, serializeProxyV1, serializeProxyV2 } from '../lib/intercept/proxy-protocol.js';
import { connectUpstream } from '../lib/intercept/upstream-connect.js';

const self = fileURLToPath(import.meta.url);
const CONNECTIONS = 3000;
const CONCURRENCY = 50;
const RELAY_BYTES = 256 * 1024 * 1024;
const PARSE_OPS = 300_000;

type ServerKind = 'raw' | 'fixed' | 'proxy' | 'sink' | 'relay';

/** A server child: prints "PORT n", serves until SIGTERM. */
async function serve(kind: ServerKind, arg: string): Promise<void> {
  let port = 0;
  if (kind === 'raw' || kind === 'sink') {
    const srv = net.createServer((s) => {
      s.on('error', () => undefined);
      if (kind === 'raw') s.end('220 ready\r\n');
      else {
        // Answers once the whole stream arrived (no half-close: the listener's sockets do not allow it).
        let got = 0;
        s.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= RELAY_BYTES) s.end('OK\r\n');
        });
      }
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    port = (srv.address() as net.AddressInfo).port;
  } else {
    const upstream = { ip: '127.0.0.1', port: Number(arg) || 9 };
    const l = createInterceptListener(
      { listen: { ip: '127.0.0.1', port: 0 }, mode: kind === 'proxy' ? 'proxy' : 'fixed', upstream, backlog: 1024 },
      NULL_LOGGER,
    );
    l.on('connection', (c) => {
      c.socket.on('error', () => undefined);
      if (kind !== 'relay') {
        c.socket.end('220 ready\r\n');
        return;
      }
      void connectUpstream(c.destination, { timeoutMs: 5000 }).then((up) => {
        up.on('error', () => undefined);
        c.socket.pipe(up);
        up.pipe(c.socket);
      });
    });
    await l.listen();
    port = l.endpoint?.port ?? 0;
  }
  process.stdout.write(`PORT ${port}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

function child(args: string[]): { firstLine: Promise<string>; kill: () => void } {
  const c = spawn(process.execPath, [self, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  const firstLine = new Promise<string>((resolve, reject) => {
    c.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    c.on('exit', (code) => reject(new Error(`child ${args.join(' ')} exited ${code} before answering`)));
  });
  return { firstLine, kill: () => c.kill('SIGTERM') };
}

/** Opens CONNECTIONS connections, CONCURRENCY at a time; each sends `hello` and waits for the server's first bytes. */
async function handoffRate(port: number, hello: Buffer | undefined): Promise<number> {
  let started = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.setTimeout(10000, () => reject(new Error('timeout')));
      s.on('error', reject);
      s.once('connect', () => {
        if (hello) s.write(hello);
      });
      s.once('data', () => {
        s.destroy();
        resolve();
      });
    });
  const worker = async (): Promise<void> => {
    while (started < CONNECTIONS) {
      started++;
      await one();
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return Math.round((CONNECTIONS / (performance.now() - t0)) * 1000);
}

async function throughput(port: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise((r) => s.once('connect', r));
  const t0 = performance.now();
  const done = new Promise<void>((resolve) => s.once('data', () => resolve()));
  let sent = 0;
  while (sent < RELAY_BYTES) {
    sent += chunk.length;
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  await done;
  s.destroy();
  return Math.round((RELAY_BYTES / 1048576 / (performance.now() - t0)) * 1000);
}

async function withServer<T>(kind: ServerKind, arg: string, fn: (port: number) => Promise<T>): Promise<T> {
  const srv = child(['serve', kind, arg]);
  try {
    const port = Number((await srv.firstLine).split(' ')[1]);
    return await fn(port);
  } finally {
    srv.kill();
  }
}

async function scenario(name: string): Promise<Record<string, number>> {
  const v1 = serializeProxyV1({ family: 'tcp4', source: { ip: '192.0.2.10', port: 40000 }, destination: { ip: '198.51.100.1', port: 25 } });
  const v2 = serializeProxyV2({ command: 'proxy', family: 'tcp6', source: { ip: '2001:db8::1', port: 40000 }, destination: { ip: '2001:db8::25', port: 25 }, tlvs: [{ type: 5, value: Buffer.alloc(16) }] }, true);
  switch (name) {
    case 'parse': {
      const out: Record<string, number> = {};
      for (const [k, b] of [['parseV1PerSec', v1], ['parseV2CrcPerSec', v2]] as const) {
        for (let i = 0; i < 10_000; i++) parseProxyHeader(b);
        const t0 = performance.now();
        for (let i = 0; i < PARSE_OPS; i++) if (parseProxyHeader(b).kind !== 'header') throw new Error('parse failed');
        out[k] = Math.round((PARSE_OPS / (performance.now() - t0)) * 1000);
      }
      return out;
    }
    case 'raw':
      return { rawConnPerSec: await withServer('raw', '', (p) => handoffRate(p, undefined)) };
    case 'fixed':
      return { fixedConnPerSec: await withServer('fixed', '', (p) => handoffRate(p, undefined)) };
    case 'proxyV1':
      return { proxyV1ConnPerSec: await withServer('proxy', '', (p) => handoffRate(p, v1)) };
    case 'proxyV2':
      return { proxyV2ConnPerSec: await withServer('proxy', '', (p) => handoffRate(p, v2)) };
    case 'direct':
      return { directMBps: await withServer('sink', '', (p) => throughput(p)) };
    case 'relay':
      return { relayMBps: await withServer('sink', '', (sink) => withServer('relay', String(sink), (p) => throughput(p))) };
    default:
      throw new Error(`unknown scenario ${name}`);
  }
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === 'serve') return await serve((process.argv[3] ?? 'raw') as ServerKind, process.argv[4] ?? '');
  if (mode === 'scenario') {
    process.stdout.write(JSON.stringify(await scenario(process.argv[3] ?? '')) + '\n');
    return;
  }
  const results: Record<string, number> = {};
  for (const sc of ['parse', 'raw', 'fixed', 'proxyV1', 'proxyV2', 'direct', 'relay']) {
    const c = child(['scenario', sc]);
    Object.assign(results, JSON.parse(await c.firstLine) as Record<string, number>);
  }
  const rows: [string, number | undefined, string][] = [
    ['PROXY v1 parse /s', results['parseV1PerSec'], 'TCP4 line'],
    ['PROXY v2 parse /s', results['parseV2CrcPerSec'], 'TCP6 + UNIQUE_ID + CRC32C'],
    ['accept→220 conn/s, plain net.Server', results['rawConnPerSec'], 'the limit'],
    ['accept→220 conn/s, listener fixed', results['fixedConnPerSec'], ''],
    ['accept→220 conn/s, listener proxy v1', results['proxyV1ConnPerSec'], ''],
    ['accept→220 conn/s, listener proxy v2', results['proxyV2ConnPerSec'], ''],
    ['throughput MB/s, straight to sink', results['directMBps'], 'the limit'],
    ['throughput MB/s, via listener + relay', results['relayMBps'], `${RELAY_BYTES / 1048576} MiB`],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  process.stdout.write(`${'scenario'.padEnd(w)}  ${'value'.padStart(10)}  note\n`);
  for (const [a, b, c] of rows) process.stdout.write(`${a.padEnd(w)}  ${String(b).padStart(10)}  ${c}\n`);
  process.stdout.write('BENCH_JSON ' + JSON.stringify({ name: 'transparent', connections: CONNECTIONS, concurrency: CONCURRENCY, ...results }) + '\n');
}

await main();
