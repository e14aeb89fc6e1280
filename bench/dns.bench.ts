/**
 * DNS benchmark: cached lookups per second through DnsResolver (target 100,000/s), and the time a cold SPF
 * check with 5 includes takes against a loopback DNS server (spec/helpers/dns-server.ts in its own process).
 * Reference in the same run: a Map lookup (the floor for a cached answer) and node:dns (c-ares, uncached)
 * asking the same server for the same record.
 * Each scenario runs in a fresh process: `node dns.bench.js` spawns `serve` and `scenario NAME` children.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as nodeDns } from 'node:dns';
import { fileURLToPath } from 'node:url';
import { DnsResolver } from '../lib/policy/dns-resolver.js';
import { SpfChecker } from '../lib/policy/spf-checker.js';
import { startTestDnsServer, type TestZone } from '../spec/helpers/dns-server.js';

const self = fileURLToPath(import.meta.url);
const NAMES = 1000;
const CACHED_OPS = 400_000;
const SPF_RUNS = 60;

function zone(): TestZone {
  const z: Record<string, TestZone[string]> = {
    'bench.test': [{ type: 'TXT', data: 'v=spf1 ' + [1, 2, 3, 4, 5].map((i) => `include:i${i}.bench.test`).join(' ') + ' -all' }],
  };
  for (let i = 1; i <= 5; i++) z[`i${i}.bench.test`] = [{ type: 'TXT', data: `v=spf1 ip4:10.0.${i}.0/24 -all` }];
  for (let i = 0; i < NAMES; i++) z[`h${i}.bench.test`] = [{ type: 'A', data: `10.1.${Math.floor(i / 250)}.${i % 250}` }];
  return z;
}

async function serve(): Promise<void> {
  const s = await startTestDnsServer({ zone: zone() });
  process.stdout.write(`PORT ${s.port}\n`);
  process.on('SIGTERM', () => void s.stop().then(() => process.exit(0)));
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

async function scenario(name: string, port: number): Promise<object> {
  const server = `127.0.0.1:${port}`;
  if (name === 'cached') {
    const r = new DnsResolver({ servers: [server], cacheEntries: NAMES * 2 });
    const names = Array.from({ length: NAMES }, (_, i) => `h${i}.bench.test`);
    for (const n of names) await r.query(n, 'A');
    const t0 = performance.now();
    for (let i = 0; i < CACHED_OPS; i++) await r.query(names[i % NAMES] ?? '', 'A');
    const ms = performance.now() - t0;
    const map = new Map(names.map((n) => [n, ['x']]));
    const t1 = performance.now();
    let sink = 0;
    for (let i = 0; i < CACHED_OPS; i++) sink += (await Promise.resolve(map.get(names[i % NAMES] ?? '')))?.length ?? 0;
    const mapMs = performance.now() - t1;
    return { cachedPerSec: Math.round((CACHED_OPS / ms) * 1000), mapPerSec: Math.round((CACHED_OPS / mapMs) * 1000), sink, wire: r.stats.wireQueries };
  }
  // cold SPF with 5 includes: a fresh resolver (empty cache) every run; the client matches the 5th include
  const times: number[] = [];
  const rtts: number[] = [];
  const ref = new nodeDns.Resolver({ timeout: 2000, tries: 1 });
  ref.setServers([server]);
  for (let i = 0; i < SPF_RUNS; i++) {
    const spf = new SpfChecker({ resolver: new DnsResolver({ servers: [server] }) });
    const t0 = performance.now();
    const res = await spf.check({ ip: '10.0.5.9', helo: 'h.test', sender: 'a@bench.test' });
    times.push(performance.now() - t0);
    if (res.result !== 'pass') throw new Error(`unexpected SPF result ${res.result}`);
    const t1 = performance.now();
    await ref.resolveTxt('bench.test');
    rtts.push(performance.now() - t1);
  }
  times.sort((a, b) => a - b);
  rtts.sort((a, b) => a - b);
  return {
    spfColdMedianMs: +pct(times, 0.5).toFixed(3),
    spfColdP95Ms: +pct(times, 0.95).toFixed(3),
    queriesPerCheck: 6,
    nodeDnsTxtMedianMs: +pct(rtts, 0.5).toFixed(3),
  };
}

function run(args: string[]): { child: ChildProcess; firstLine: Promise<string> } {
  const child = spawn(process.execPath, [self, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstLine = new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`child ${args.join(' ')} exited ${String(code)} before answering`)));
  });
  return { child, firstLine };
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === 'serve') return await serve();
  if (mode === 'scenario') {
    const out = await scenario(process.argv[3] ?? '', Number(process.argv[4]));
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const results: Record<string, unknown> = {};
  for (const sc of ['cached', 'spf']) {
    const srv = run(['serve']);
    const port = Number((await srv.firstLine).split(' ')[1]);
    try {
      const child = run(['scenario', sc, String(port)]);
      Object.assign(results, JSON.parse(await child.firstLine) as object);
    } finally {
      srv.child.kill('SIGTERM');
    }
  }
  const r = results as Record<string, number>;
  const rows: [string, string, string][] = [
    ['cached lookups/s (DnsResolver)', String(r['cachedPerSec']), 'target 100,000'],
    ['  reference: Map lookup + await /s', String(r['mapPerSec']), 'floor'],
    ['cold SPF, 5 includes, median ms', String(r['spfColdMedianMs']), `${String(r['queriesPerCheck'])} queries`],
    ['cold SPF, 5 includes, p95 ms', String(r['spfColdP95Ms']), ''],
    ['  reference: node:dns TXT, median ms', String(r['nodeDnsTxtMedianMs']), '1 query, uncached'],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  process.stdout.write(`${'scenario'.padEnd(w)}  ${'value'.padStart(10)}  note\n`);
  for (const [a, b, c] of rows) process.stdout.write(`${a.padEnd(w)}  ${b.padStart(10)}  ${c}\n`);
  process.stdout.write('BENCH_JSON ' + JSON.stringify({ name: 'dns', ...results }) + '\n');
}

await main();
