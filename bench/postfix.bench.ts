/**
 * The Postfix doors under load, each scenario in a fresh process (`node postfix.bench.js --scenario NAME`),
 * loopback only, bounded in count and time. Prints a table and one `BENCH_JSON {...}` line.
 *
 *  policy-limit  policy door with no rules (protocol + transaction building only): requests/s over 8 connections
 *  policy-rules  the same with the real engine and spec/fixtures/postfix/postfix-test.rules
 *  filter-limit  smtp-source → smtp-sink directly (the ceiling on this host)
 *  filter-door   smtp-source → filter door (real engine, spool, header edits) → smtp-sink
 * Messages: 10 KB bodies, 8 parallel sessions, several messages per session (-d).
 */
import { execFile, execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { NO_EFFECTS } from '../lib/core/effects.js';
import { DEFAULT_LIMITS } from '../lib/core/limits.js';
import { NULL_LOGGER } from '../lib/core/logger.js';
import type { PolicyPort } from '../lib/core/policy-port.js';
import { RULE_STAGES } from '../lib/core/stage.js';
import { CONTINUE } from '../lib/core/verdict.js';
import type { DoorDeps } from '../lib/daemon/door.js';
import { createFilterDoor } from '../lib/milter/filter-door.js';
import { encodePolicyRequest } from '../lib/milter/policy-codec.js';
import { createPolicyDoor } from '../lib/milter/policy-door.js';
import { compileRuleFiles, MemoryLockStore, PolicyEngine } from '../lib/policy/index.js';
import { NO_SCANNERS } from '../lib/scanners/scanner.js';
import { freePort } from '../spec/helpers/ports.js';
import { POSTFIX_TEST_RULES } from '../spec/helpers/postfix-rules.js';
import { smtpSinkAvailable, startSmtpSink } from '../spec/helpers/smtp-sink.js';

const SMTP_SOURCE = '/usr/sbin/smtp-source';
const POLICY_REQUESTS = 40_000;
const POLICY_CONNECTIONS = 8;
const MESSAGES = 2_000;
const SESSIONS = 8;
const BODY = 10_000;

async function engine(rules: boolean): Promise<PolicyPort> {
  if (!rules) return { needs: { stages: new Set(RULE_STAGES), headers: false, scan: false, spf: false, dnsLists: new Set() }, evaluate: async () => CONTINUE };
  const ruleset = await compileRuleFiles([POSTFIX_TEST_RULES]);
  return new PolicyEngine(ruleset, { locks: new MemoryLockStore(), clock: { now: () => Date.now() } }, { proxyName: 'bench.test' });
}

function deps(policy: PolicyPort): DoorDeps {
  return { policy, locks: new MemoryLockStore(), scanners: NO_SCANNERS, effects: NO_EFFECTS, limits: DEFAULT_LIMITS, logger: NULL_LOGGER, hostname: 'bench.test' };
}

async function policyScenario(rules: boolean): Promise<Record<string, number>> {
  const port = await freePort();
  const door = createPolicyDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port } }, deps(await engine(rules)));
  await door.start();
  const per = POLICY_REQUESTS / POLICY_CONNECTIONS;
  const latencies: number[] = [];
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: POLICY_CONNECTIONS }, (_, c) =>
      new Promise<void>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port });
        let buf = '';
        let sent = 0;
        let started = 0n;
        const next = (): void => {
          if (sent === per) {
            s.end();
            return resolve();
          }
          // Four RCPT requests per message (instance), like a 4-recipient message.
          const instance = `${c}.${Math.floor(sent / 4)}`;
          started = process.hrtime.bigint();
          s.write(
            encodePolicyRequest([
              ['request', 'smtpd_access_policy'],
              ['protocol_state', 'RCPT'],
              ['protocol_name', 'ESMTP'],
              ['client_address', `198.51.100.${sent % 250}`],
              ['client_name', 'mail.example.org'],
              ['helo_name', 'mail.example.org'],
              ['sender', `s${sent}@example.org`],
              ['recipient', `r${sent}@example.net`],
              ['instance', instance],
              ['size', '0'],
            ]),
          );
          sent++;
        };
        s.setEncoding('utf8');
        s.setNoDelay(true);
        s.on('connect', next);
        s.on('error', reject);
        s.on('data', (d: string) => {
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            buf = buf.slice(i + 2);
            latencies.push(Number(process.hrtime.bigint() - started) / 1e3);
            next();
          }
        });
      }),
    ),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await door.stop(100);
  latencies.sort((a, b) => a - b);
  return { requests: POLICY_REQUESTS, seconds: round(secs), perSecond: Math.round(POLICY_REQUESTS / secs), p50us: Math.round(latencies[Math.floor(latencies.length / 2)] ?? 0), p99us: Math.round(latencies[Math.floor(latencies.length * 0.99)] ?? 0) };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function smtpSource(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(SMTP_SOURCE, ['-s', String(SESSIONS), '-m', String(MESSAGES), '-l', String(BODY), '-d', '-f', 'bench@example.org', '-t', 'rcpt@example.net', '-M', 'bench.client', `127.0.0.1:${port}`], { timeout: 120_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`smtp-source failed: ${err.message} ${String(stderr)}`)) : resolve(),
    );
  });
}

async function filterScenario(viaDoor: boolean): Promise<Record<string, number>> {
  // The sink dumps every message (both scenarios alike), so `delivered` counts what really arrived.
  const sink = await startSmtpSink({ flags: [] });
  let port = sink.port;
  let door: Awaited<ReturnType<typeof createFilterDoor>> | undefined;
  if (viaDoor) {
    port = await freePort();
    door = createFilterDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port }, nextHop: { host: '127.0.0.1', port: sink.port } }, deps(await engine(true)));
    await door.start();
  }
  const t0 = process.hrtime.bigint();
  await smtpSource(port);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const delivered = (await sink.waitForMessages(MESSAGES, 30_000)).length;
  await door?.stop(500);
  await sink.stop();
  return { messages: MESSAGES, delivered, seconds: round(secs), perSecond: Math.round(MESSAGES / secs), mbPerSecond: round((MESSAGES * BODY) / secs / 1e6) };
}

const SCENARIOS: Record<string, () => Promise<Record<string, number>>> = {
  'policy-limit': () => policyScenario(false),
  'policy-rules': () => policyScenario(true),
  'filter-limit': () => filterScenario(false),
  'filter-door': () => filterScenario(true),
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--scenario') {
    const fn = SCENARIOS[argv[1] ?? ''];
    if (!fn) throw new Error(`unknown scenario ${argv[1]}`);
    process.stdout.write(JSON.stringify(await fn()) + '\n');
    return;
  }
  const self = fileURLToPath(import.meta.url);
  const rows: Record<string, Record<string, number> | { skipped: string }> = {};
  for (const name of Object.keys(SCENARIOS)) {
    if (name.startsWith('filter') && !(smtpSinkAvailable && process.getuid?.() === 0)) {
      rows[name] = { skipped: 'smtp-sink/smtp-source need the postfix package (and root for smtp-sink -u)' };
      continue;
    }
    const out = execFileSync(process.execPath, [self, '--scenario', name], { encoding: 'utf8', timeout: 150_000 });
    rows[name] = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, number>;
  }
  console.log('Postfix doors (loopback; each scenario in a fresh process)');
  console.log('scenario        what                                              rate            latency / volume');
  const p = (k: string): Record<string, number> => rows[k] as Record<string, number>;
  const line = (name: string, what: string, rate: string, extra: string): void => console.log(`${name.padEnd(15)} ${what.padEnd(49)} ${rate.padEnd(15)} ${extra}`);
  for (const k of ['policy-limit', 'policy-rules']) {
    const r = p(k);
    line(k, k === 'policy-limit' ? `${POLICY_REQUESTS} RCPT requests, ${POLICY_CONNECTIONS} conns, no rules` : 'same, real engine + postfix-test.rules', `${r['perSecond']} req/s`, `p50 ${r['p50us']} µs, p99 ${r['p99us']} µs`);
  }
  for (const k of ['filter-limit', 'filter-door']) {
    const r = rows[k] as Record<string, number> & { skipped?: string };
    if (r.skipped) line(k, 'skipped', '-', r.skipped);
    else line(k, k === 'filter-limit' ? `smtp-source → smtp-sink, ${MESSAGES} × ${BODY / 1000} KB, ${SESSIONS} sessions` : 'smtp-source → filter door → smtp-sink', `${r['perSecond']} msg/s`, `${r['mbPerSecond']} MB/s, ${r['delivered']} delivered`);
  }
  const limit = rows['filter-limit'] as Record<string, number> | undefined;
  const viaDoor = rows['filter-door'] as Record<string, number> | undefined;
  if (limit?.['perSecond'] && viaDoor?.['perSecond']) console.log(`filter door reaches ${Math.round((100 * viaDoor['perSecond']) / limit['perSecond'])}% of the direct smtp-source → smtp-sink rate`);
  console.log('BENCH_JSON ' + JSON.stringify({ bench: 'postfix', scenarios: rows }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
