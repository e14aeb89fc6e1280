/**
 * Runs `hook` effects: the configured argv (hooks: name → argv), never through a shell, with smtp-gated's
 * action-script environment built from the transaction plus the effect's own values (FOUND, LOCK_DURATION…).
 * Fire-and-forget: run() returns at once; the hook runs detached in its own process group with stdio ignored,
 * is never waited on by a session, and is killed (whole group) after its timeout. At most `maxConcurrent` hooks
 * run at once; up to `maxQueued` wait; beyond that new ones are dropped and logged.
 */
import { spawn } from 'node:child_process';
import type { EffectRunner } from '../core/effects.js';
import type { Logger } from '../core/logger.js';
import type { Transaction } from '../core/transaction.js';
import type { Effect } from '../core/verdict.js';

export interface ActionHookConfig {
  readonly command: readonly string[];
  readonly timeout: number;
}

export interface ActionHookRunnerOptions {
  readonly hooks: Readonly<Record<string, ActionHookConfig>>;
  /** PROXY_NAME (smtp-gated's proxy_name): our host name. */
  readonly proxyName: string;
  readonly maxConcurrent?: number;
  readonly maxQueued?: number;
  /** Working directory of hooks (default: the daemon's). */
  readonly cwd?: string;
  /** PATH given to hooks (default /usr/local/bin:/usr/bin:/bin). Nothing else is inherited. */
  readonly path?: string;
  /** Append smtp-gated's positional arguments (FOUND, source IP, ident "-", target IP) for old scripts. */
  readonly legacyArgs?: boolean;
  /** Clock for TIME/UNIXTIME (tests). */
  readonly now?: () => number;
}

export interface ActionHookRunner extends EffectRunner {
  readonly running: number;
  readonly queued: number;
  /** Kills running hooks and forgets queued ones (daemon shutdown). */
  close(): void;
}

type HookEffect = Extract<Effect, { kind: 'hook' }>;

function clean(v: string): string {
  return v.replace(/\0/g, '');
}

/** smtp-gated's action environment (smtp-gated.conf(5), action_script) from a transaction. */
export function hookEnvironment(effect: HookEffect, tx: Transaction, proxyName: string, now: number, path: string): Record<string, string> {
  const s = tx.session;
  const scan = tx.message.scan;
  const env: Record<string, string> = {
    PATH: path,
    PROXY_NAME: proxyName,
    HOOK: effect.hook,
    RULE: effect.rule,
    FOUND: 'RULE',
    SESSION_ID: s.id,
    DOOR: s.door,
    SOURCE_IP: s.client.ip,
    SOURCE_PORT: String(s.client.port),
    TARGET_IP: s.destination?.ip ?? '',
    TARGET_PORT: s.destination ? String(s.destination.port) : '',
    IDENT: '-',
    HELO: s.helo ?? '',
    MAIL_FROM: tx.envelope.mailFrom ?? '',
    // Recipients accepted over the whole session, as smtp-gated counted them (the engine's hook effects bring
    // their own value, which also counts the recipient being judged at the rcpt stage).
    RCPTS_TOTAL: String(s.rcptsTotal),
    SIZE: String(tx.message.size),
    TRANSACTION: String(s.messages + 1),
    AUTH: s.auth?.user ?? '',
    VIRUS_NAME: scan.virus?.found ? (scan.virus.name ?? '') : '',
    SPAM_SCORE: scan.spam ? scan.spam.score.toFixed(3) : '',
    LOCK_DURATION: '',
    TIME: new Date(now).toISOString(),
    UNIXTIME: String(Math.floor(now / 1000)),
  };
  for (const [k, v] of Object.entries(effect.env)) {
    if (/^[A-Z_][A-Z0-9_]{0,63}$/.test(k) && k !== 'PATH') env[k] = v;
  }
  for (const k of Object.keys(env)) env[k] = clean(env[k] as string);
  return env;
}

export function createActionHookRunner(options: ActionHookRunnerOptions, logger: Logger): ActionHookRunner {
  const log = logger.child({ component: 'hooks' });
  const maxConcurrent = Math.max(1, options.maxConcurrent ?? 8);
  const maxQueued = Math.max(0, options.maxQueued ?? 100);
  const now = options.now ?? Date.now;
  const path = options.path ?? '/usr/local/bin:/usr/bin:/bin';
  const queue: Array<{ name: string; argv: readonly string[]; timeout: number; env: Record<string, string> }> = [];
  const running = new Map<number, NodeJS.Timeout>();
  let closed = false;

  const pump = (): void => {
    while (!closed && running.size < maxConcurrent && queue.length > 0) {
      const job = queue.shift();
      if (job) launch(job);
    }
  };

  const launch = (job: { name: string; argv: readonly string[]; timeout: number; env: Record<string, string> }): void => {
    const [program, ...args] = job.argv;
    if (program === undefined) return;
    let child;
    try {
      child = spawn(program, args, { env: job.env, detached: true, stdio: 'ignore', ...(options.cwd ? { cwd: options.cwd } : {}) });
    } catch (err) {
      log.error({ err, hook: job.name }, 'action hook could not be started');
      return;
    }
    const pid = child.pid;
    child.on('error', (err: NodeJS.ErrnoException) => {
      log.error({ hook: job.name, code: err.code, error: err.message }, 'action hook could not be started');
      if (pid !== undefined) {
        clearTimeout(running.get(pid));
        running.delete(pid);
      }
      pump();
    });
    if (pid === undefined) return;
    child.unref();
    const timer = setTimeout(() => {
      log.warn({ hook: job.name, pid, timeoutMs: job.timeout }, 'action hook timed out; killing its process group');
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, job.timeout);
    timer.unref();
    running.set(pid, timer);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      running.delete(pid);
      if (code !== 0) log.warn({ hook: job.name, pid, code, signal }, 'action hook failed');
      else log.debug({ hook: job.name, pid }, 'action hook finished');
      pump();
    });
  };

  return {
    get running() {
      return running.size;
    },
    get queued() {
      return queue.length;
    },
    run(effects: readonly Effect[], tx: Transaction): void {
      for (const e of effects) {
        if (e.kind !== 'hook') continue;
        try {
          const hook = options.hooks[e.hook];
          if (!hook) {
            log.warn({ hook: e.hook, rule: e.rule }, 'rule asks for an action hook that is not configured');
            continue;
          }
          if (closed) continue;
          if (queue.length >= maxQueued && running.size >= maxConcurrent) {
            log.warn({ hook: e.hook, rule: e.rule, running: running.size, queued: queue.length }, 'too many action hooks; dropped');
            continue;
          }
          const env = hookEnvironment(e, tx, options.proxyName, now(), path);
          const argv = options.legacyArgs ? [...hook.command, env['FOUND'] ?? '', env['SOURCE_IP'] ?? '', '-', env['TARGET_IP'] ?? ''] : hook.command;
          queue.push({ name: e.hook, argv, timeout: hook.timeout, env });
          pump();
        } catch (err) {
          log.error({ err, hook: e.hook }, 'action hook failed');
        }
      }
      pump();
    },
    close(): void {
      closed = true;
      queue.length = 0;
      for (const [pid, timer] of running) {
        clearTimeout(timer);
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      running.clear();
    },
  };
}
