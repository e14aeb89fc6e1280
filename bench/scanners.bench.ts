/**
 * Scanner benchmark (loopback only, private clamd with a one-signature database, bounded in time):
 *  1. a 10 MB message through ScannerSet→clamd (written in 64 KiB chunks, as a door streams it) versus clamd's
 *     own INSTREAM time for the same bytes written straight to its socket (target: within 1.2x);
 *  2. 100 KB messages scanned per second through the ScannerSet (4 in flight) versus the raw socket;
 *  3. 100 KB messages per second through the ScannerSet→spamd (private spamd, local rules only).
 * Each scenario runs in a fresh process against the same clamd. Prints a table and one `BENCH_JSON ` line.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NULL_LOGGER } from '../lib/core/logger.js';
import { createScannerSet } from '../lib/scanners/scanner-set.js';
import { startClamd } from '../spec/helpers/clamd.js';
import { startSpamd } from '../spec/helpers/spamd.js';
import { median, rawInstream as rawInstreamChunked } from './bench-util.js';

const SELF = fileURLToPath(import.meta.url);
const CHUNK = 64 * 1024;

const TOKEN = 'XXXXXXXXXXXXXXXX';

function message(size: number): Buffer {
  const head = `From: bench@example.test\r\nTo: rcpt@example.test\r\nSubject: bench\r\nMessage-ID: <${TOKEN}@example.test>\r\n\r\n`;
  const line = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incid\r\n';
  const body = line.repeat(Math.ceil((size - head.length) / line.length));
  return Buffer.from((head + body).slice(0, size), 'latin1');
}

let serial = 0;
/**
 * A copy of `template` with a unique Message-ID: clamd caches verdicts by content hash, so scanning the same bytes
 * twice would measure its cache, not a scan.
 */
function unique(template: Buffer): Buffer {
  const copy = Buffer.from(template);
  copy.write(`${process.pid.toString(16)}-${(serial++).toString(16)}`.padEnd(TOKEN.length, '0').slice(0, TOKEN.length), template.indexOf(TOKEN), 'latin1');
  return copy;
}

/** clamd's own time: the framed bytes written in one go, until the reply. */
function rawInstream(socketPath: string, data: Buffer): Promise<number> {
  return rawInstreamChunked(socketPath, data, CHUNK);
}

async function viaSet(set: ReturnType<typeof createScannerSet>, data: Buffer): Promise<number> {
  const t0 = process.hrtime.bigint();
  const job = set.start({ sessionId: 'bench', client: { ip: '127.0.0.1', port: 1 }, recipients: ['r@example.test'] });
  for (let off = 0; off < data.length; off += CHUNK) job.write(data.subarray(off, Math.min(off + CHUNK, data.length)));
  const out = await job.end();
  if (out.results.virus?.found !== false) throw new Error(`unexpected result ${JSON.stringify(out.results)}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function spamdRate(address: string): Promise<Record<string, number>> {
  const set = createScannerSet({ spamd: { address, timeout: 30_000, maxSize: 512 * 1024 }, memoryLimit: 1024 * 1024 }, NULL_LOGGER);
  const data = message(100 * 1024);
  const one = async (): Promise<void> => {
    const job = set.start({ sessionId: 'bench', client: { ip: '127.0.0.1', port: 1 }, recipients: ['r@example.test'] });
    const msg = unique(data);
    for (let off = 0; off < msg.length; off += CHUNK) job.write(msg.subarray(off, Math.min(off + CHUNK, msg.length)));
    const out = await job.end();
    if (!out.results.spam) throw new Error(`spamd failed: ${JSON.stringify(out.results.failed)}`);
  };
  try {
    await one();
    const end = Date.now() + 3000;
    let n = 0;
    const t0 = Date.now();
    await Promise.all([0, 1, 2].map(async () => {
      while (Date.now() < end) {
        await one();
        n++;
      }
    }));
    return { perSec: n / ((Date.now() - t0) / 1000) };
  } finally {
    await set.close();
  }
}

async function scenario(name: string, socketPath: string): Promise<Record<string, number>> {
  if (name === 'spamd') return await spamdRate(socketPath);
  const set = createScannerSet({ clamd: { address: socketPath, timeout: 60_000, maxSize: 25 * 1024 * 1024 } }, NULL_LOGGER);
  try {
    if (name === 'large') {
      const data = message(10 * 1024 * 1024);
      await rawInstream(socketPath, data); // warm-up
      await viaSet(set, data);
      const raw: number[] = [];
      const ours: number[] = [];
      for (let i = 0; i < 5; i++) {
        raw.push(await rawInstream(socketPath, unique(data)));
        ours.push(await viaSet(set, unique(data)));
      }
      return { rawMs: median(raw), setMs: median(ours), ratio: median(ours) / median(raw) };
    }
    const data = message(100 * 1024);
    const runFor = async (fn: () => Promise<number>): Promise<number> => {
      const end = Date.now() + 3000;
      let n = 0;
      const worker = async (): Promise<void> => {
        while (Date.now() < end) {
          await fn();
          n++;
        }
      };
      const t0 = Date.now();
      await Promise.all([worker(), worker(), worker(), worker()]);
      return n / ((Date.now() - t0) / 1000);
    };
    await runFor(() => viaSet(set, unique(data))).catch(() => 0);
    const rawRate = await runFor(() => rawInstream(socketPath, unique(data)));
    const setRate = await runFor(() => viaSet(set, unique(data)));
    return { rawPerSec: rawRate, setPerSec: setRate, ratio: rawRate / setRate };
  } finally {
    await set.close();
  }
}

async function child(name: string, socketPath: string): Promise<Record<string, number>> {
  return await new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [SELF, '--scenario', name, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), 90_000);
    c.on('close', (code) => {
      clearTimeout(t);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`scenario ${name} failed (${code}): ${out}`));
      else resolve(JSON.parse(line.slice(7)) as Record<string, number>);
    });
  });
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--scenario');
  if (i >= 0) {
    const r = await scenario(process.argv[i + 1] ?? '', process.argv[i + 2] ?? '');
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    return;
  }
  const clamd = await startClamd({ streamMaxLength: '25M' });
  try {
    const large = await child('large', clamd.socketPath);
    const small = await child('small', clamd.socketPath);
    const spamd = await startSpamd();
    let spam: Record<string, number>;
    try {
      spam = await child('spamd', spamd.address);
    } finally {
      await spamd.stop();
    }
    const f = (n: number | undefined, d = 1): string => (n ?? 0).toFixed(d);
    const rows = [
      ['scenario', 'clamd alone (raw socket)', 'ScannerSet→clamd', 'ratio'],
      ['10 MB message, ms (median of 5)', f(large['rawMs']), f(large['setMs']), f(large['ratio'], 2) + 'x'],
      ['100 KB messages/s (4 in flight, 3 s)', f(small['rawPerSec']), f(small['setPerSec']), f(small['ratio'], 2) + 'x'],
      ['100 KB messages/s via spamd (3 in flight, 3 s)', '-', f(spam['perSec']), '-'],
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
    for (const r of rows) process.stdout.write(r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ') + '\n');
    process.stdout.write(`target: 10 MB ratio <= 1.2x: ${(large['ratio'] ?? 99) <= 1.2 ? 'met' : 'NOT met'}\n`);
    process.stdout.write(
      'BENCH_JSON ' +
        JSON.stringify({ bench: 'scanners', clamd10MB: { rawMs: large['rawMs'], setMs: large['setMs'], ratio: large['ratio'], target: 1.2 }, clamd100KB: { rawPerSec: small['rawPerSec'], setPerSec: small['setPerSec'] }, spamd100KB: { setPerSec: spam['perSec'] } }) +
        '\n',
    );
  } finally {
    await clamd.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`scanners bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
