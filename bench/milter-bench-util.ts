/**
 * What the milter benchmark's scenarios share: the door's dependencies, the example ruleset as the benchmark runs
 * it, a bounded command runner, and a counter of Postfix's deliveries.
 */
import { execFile } from 'node:child_process';
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_LIMITS } from '../lib/core/limits.js';
import { NULL_LOGGER, type Logger } from '../lib/core/logger.js';
import { NO_EFFECTS } from '../lib/core/effects.js';
import type { PolicyPort } from '../lib/core/policy-port.js';
import type { DoorDeps } from '../lib/daemon/door.js';
import { compileRules, MemoryLockStore, PolicyEngine } from '../lib/policy/index.js';
import { NO_SCANNERS } from '../lib/scanners/scanner.js';
import { repoRoot } from '../spec/helpers/paths.js';
import type { PostfixInstance } from '../spec/helpers/postfix.js';
import { SMTP_SOURCE } from './bench-util.js';

export function deps(policy: PolicyPort, logger: Logger = NULL_LOGGER): DoorDeps {
  return { policy, locks: new MemoryLockStore(), scanners: NO_SCANNERS, effects: NO_EFFECTS, limits: DEFAULT_LIMITS, logger, hostname: 'bench.sluice.test' };
}

export function exampleEngine(): PolicyEngine {
  const dir = join(repoRoot, 'conf', 'rules');
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.rules')).sort();
  } catch {
    files = [];
  }
  const sources = files.map((f) => {
    let text = readFileSync(join(dir, f), 'utf8');
    // Loopback is `trusted` (accepted at connect) in the example; the benchmark's clients are all loopback.
    text = text.replace(/^list trusted = .*$/m, 'list trusted = 192.0.2.254/32');
    return { file: join(dir, f), text };
  });
  if (sources.length === 0) sources.push({ file: 'accept-all.rules', text: 'rule trace at data: => add header "X-Sluice-Trace" "bench"\n' });
  const rs = compileRules(sources);
  return new PolicyEngine(rs, { locks: new MemoryLockStore(), clock: { now: () => Date.now() } }, { proxyName: 'bench.sluice.test' });
}

export function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? -1 : 0, out: String(stdout) + String(stderr) }));
  });
}

/** Counts "status=sent" in Postfix's log, reading only what was appended since the last call. */
export function sentCounter(pf: PostfixInstance): () => number {
  let offset = 0;
  let count = 0;
  let tail = '';
  return () => {
    let fd: number;
    try {
      fd = openSync(pf.logFile, 'r');
    } catch {
      return count;
    }
    try {
      const size = fstatSync(fd).size;
      if (size > offset) {
        const buf = Buffer.alloc(size - offset);
        readSync(fd, buf, 0, buf.length, offset);
        offset = size;
        const text = tail + buf.toString('latin1');
        const cut = text.lastIndexOf('\n') + 1;
        for (let i = text.indexOf('status=sent'); i >= 0 && i < cut; i = text.indexOf('status=sent', i + 1)) count++;
        tail = text.slice(cut);
      }
    } finally {
      closeSync(fd);
    }
    return count;
  };
}


export interface SendOptions {
  readonly sessions: number;
  readonly messages: number;
  readonly bodyBytes: number;
  /** smtp-source -d: the messages go over `sessions` long SMTP sessions instead of one session each. */
  readonly manyPerSession: boolean;
}

/** smtp-source with the benchmark's envelope into 127.0.0.1:port; bounded in time. */
export function sendMessages(port: number, o: SendOptions): Promise<{ code: number; out: string }> {
  return run(
    SMTP_SOURCE,
    [...(o.manyPerSession ? ['-d'] : []), '-s', String(o.sessions), '-m', String(o.messages), '-l', String(o.bodyBytes), '-f', 'alice@example.org', '-t', 'bob@example.net', '-M', 'client.example.org', '-S', 'bench', `127.0.0.1:${port}`],
    150_000,
  );
}
