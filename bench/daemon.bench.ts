/**
 * Daemon benchmarks: what the daemon itself costs around the doors.
 *   - logging: records/s through the text formatter and through plain pino JSON (same records, null sink),
 *     plus a disabled level (must cost ~nothing);
 *   - configuration: parse + validate conf/sluice.yaml;
 *   - reload: a SIGHUP-style reload of a running daemon (config + every rule file in conf/rules compiled, new
 *     runtime built, doors updated), and `sluice check` as a process, end to end.
 * Loopback only (the daemon's doors bind 127.0.0.1:0), bounded well under a minute.
 * Prints a table and one `BENCH_JSON {...}` line.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../lib/daemon/config-loader.js';
import { Daemon } from '../lib/daemon/daemon.js';
import { builtinDoors } from '../lib/daemon/door-wiring.js';
import { createDaemonLogger } from '../lib/daemon/logger.js';
import { buildRoot, repoRoot } from '../spec/helpers/paths.js';
import { makeTempDir } from '../spec/helpers/temp-dir.js';
import { median } from './bench-util.js';

function logRate(format: 'text' | 'json', level: 'info' | 'warn', n: number): number {
  let bytes = 0;
  const log = createDaemonLogger({ level: level, format }, { write: (l) => void (bytes += l.length) });
  const session = log.logger.child({ door: 'intercept', session: 'k3x9-12' });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) session.info({ event: 'RCPT', rcpt: 'someone@example.org', code: 250, client: '192.0.2.7:51234', i }, 'rcpt to');
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (bytes < 0) throw new Error('unreachable');
  return n / secs;
}

const results: Record<string, number> = {};
const rows: Array<[string, string]> = [];

// Logging.
const N = 100_000;
logRate('text', 'info', 5000); // warm-up
results['log_text_per_s'] = logRate('text', 'info', N);
results['log_json_per_s'] = logRate('json', 'info', N);
results['log_disabled_per_s'] = logRate('text', 'warn', N * 10);
rows.push(['log records/s, text format', results['log_text_per_s'].toFixed(0)]);
rows.push(['log records/s, json (plain pino)', results['log_json_per_s'].toFixed(0)]);
rows.push(['log calls/s, level disabled', results['log_disabled_per_s'].toFixed(0)]);

// Configuration parse + validate.
const confFile = join(repoRoot, 'conf', 'sluice.yaml');
const confText = readFileSync(confFile, 'utf8');
for (let i = 0; i < 50; i++) parseConfig(confText, confFile);
const parses = 500;
let t0 = performance.now();
for (let i = 0; i < parses; i++) parseConfig(confText, confFile);
results['config_parse_ms'] = (performance.now() - t0) / parses;
rows.push(['parse+validate conf/sluice.yaml, ms', results['config_parse_ms'].toFixed(3)]);

// Reload of a running daemon with the example rules.
const tmp = makeTempDir('sluice-bench-');
try {
  const file = join(tmp.path, 'sluice.yaml');
  writeFileSync(
    file,
    `rules: ${join(repoRoot, 'conf', 'rules')}\nlocks: { store: memory }\nspf: { enabled: false }\nlog: { level: warn }\nintercept:\n  - { listen: "127.0.0.1:0", upstream: "127.0.0.1:9" }\npolicyd: { listen: "127.0.0.1:0" }\nmilter: { listen: "127.0.0.1:0" }\n`,
  );
  const daemon = await Daemon.start({ configPath: file, registry: builtinDoors(), logWrite: () => undefined });
  const times: number[] = [];
  for (let i = 0; i < 30; i++) {
    t0 = performance.now();
    const r = await daemon.reload();
    times.push(performance.now() - t0);
    if (!r.ok) throw new Error('reload failed');
  }
  await daemon.stop(0);
  results['reload_ms_median'] = median(times);
  rows.push(['SIGHUP reload (3 doors, example rules), median ms', results['reload_ms_median'].toFixed(2)]);

  const cli = join(buildRoot, 'lib', 'cli', 'sluice.js');
  const checks: number[] = [];
  for (let i = 0; i < 3; i++) {
    t0 = performance.now();
    const r = spawnSync(process.execPath, [cli, 'check', '-q', '-c', confFile], { encoding: 'utf8', timeout: 30000 });
    checks.push(performance.now() - t0);
    if (r.status !== 0) throw new Error('sluice check failed: ' + r.stderr);
  }
  results['check_process_ms_median'] = median(checks);
  rows.push(['`sluice check` as a process (node start included), median ms', results['check_process_ms_median'].toFixed(0)]);
} finally {
  tmp.remove();
}

const width = Math.max(...rows.map(([k]) => k.length));
process.stdout.write(`${'scenario'.padEnd(width)}  value\n${'-'.repeat(width)}  -----\n`);
for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
process.stdout.write('BENCH_JSON ' + JSON.stringify({ bench: 'daemon', ...results }) + '\n');
