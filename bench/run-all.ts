/**
 * `npm run bench`: runs every compiled bench/*.bench.js in a fresh process, one after another (servers measured
 * alone on a 2-core machine), passes their tables through, and ends with one JSON document of all results.
 * `npm run bench -- NAME...` runs only the named benchmarks (e.g. `policy intercept`).
 */
import { spawn } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => wanted.length === 0 || wanted.includes(f.replace(/\.bench\.js$/, '')))
  .sort();

const results: Record<string, unknown> = {};
let failures = 0;
for (const file of files) {
  const name = file.replace(/\.bench\.js$/, '');
  process.stdout.write(`\n=== bench ${name} ===\n`);
  const started = Date.now();
  const code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', join(here, file)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('BENCH_JSON ')) {
          try {
            results[name] = JSON.parse(line.slice('BENCH_JSON '.length));
          } catch {
            process.stdout.write(`(unreadable BENCH_JSON line from ${name})\n`);
          }
        } else {
          process.stdout.write(line + '\n');
        }
      }
    });
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (code !== 0) {
    failures++;
    results[name] = { ...(results[name] as object | undefined), error: `exited with ${code}` };
  }
  process.stdout.write(`(${name}: ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
}

const doc = { node: process.version, date: new Date().toISOString(), results };
const out = join(here, '..', 'bench-results.json');
writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
process.stdout.write(`\nBENCH_JSON ${JSON.stringify(doc)}\n(all results also in ${out})\n`);
process.exitCode = failures > 0 ? 1 : 0;
