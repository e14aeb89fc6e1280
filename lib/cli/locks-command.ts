/** `sluice locks`: list, add and remove host locks and allow-list entries in the configured store. */
import { resolve } from 'node:path';
import { formatDuration } from '../core/units.js';
import { parseDuration } from '../daemon/config-units.js';
import type { LockStore } from '../policy/lock-store.js';
import { lockKeyProblem } from '../policy/allow-list.js';
import { optionValue, parseArgs, takePositionals, UsageError, type OptionSpec, type ParsedArgs } from './arg-parser.js';
import { EXIT, type CliIO } from './cli-io.js';

export const help = `Usage: sluice locks SUBCOMMAND [OPTIONS]

Works on the lock store that the configuration names (or on one given directly).

Subcommands:
  list                          live locks: key, reason, source rule, time left
  add KEY DURATION [REASON]     lock KEY (e.g. client:192.0.2.7, auth:alice) for DURATION (30m, 1h30m, 2d)
  rm KEY                        remove a lock
  allow KEY [NOTE]              allow-list KEY so it is never locked; client keys may be CIDR prefixes
                                (client:192.0.2.0/24, client:2001:db8::/32)
  disallow KEY                  remove an allow-list entry
  allowed                       list the allow-list entries
  sweep                         delete expired locks now

Where the store is (one of):
  -c, --config FILE             the sluice configuration (its locks section); default conf/sluice.yaml
      --db FILE                 an SQLite lock database
      --redis URL               a Redis server (redis://host:port/db), with --prefix (default "sluice:")

Options:
      --json                    machine-readable output (list, allowed)
  -h, --help                    this help

Exit codes: 0 ok, 1 error (store unreachable, key not found for rm/disallow), 64 usage error.
`;

const OPTIONS: readonly OptionSpec[] = [
  { name: 'config', short: 'c', value: 'FILE' },
  { name: 'db', value: 'FILE' },
  { name: 'redis', value: 'URL' },
  { name: 'prefix', value: 'PREFIX' },
  { name: 'json' },
];

/** Opens the store the options name; the configuration is read by the daemon's loader. */
async function openStore(parsed: ParsedArgs, io: CliIO): Promise<LockStore> {
  const db = optionValue(parsed, 'db');
  const redis = optionValue(parsed, 'redis');
  const config = optionValue(parsed, 'config');
  if ([db, redis, config].filter((v) => v !== undefined).length > 1) {
    throw new UsageError('sluice locks', 'give only one of --config, --db and --redis');
  }
  if (db !== undefined) {
    const { SqliteLockStore } = await import('../policy/lock-store-sqlite.js');
    return new SqliteLockStore(resolve(io.cwd, db), { sweepIntervalMs: 0 });
  }
  if (redis !== undefined) {
    const { RedisLockStore } = await import('../policy/lock-store-redis.js');
    const prefix = optionValue(parsed, 'prefix');
    return new RedisLockStore(prefix === undefined ? { url: redis } : { url: redis, prefix });
  }
  const { openConfiguredLockStore } = await import('../daemon/lock-store-factory.js');
  return await openConfiguredLockStore(resolve(io.cwd, config ?? 'conf/sluice.yaml'));
}

function checkKey(key: string, allowPrefix: boolean): void {
  const problem = lockKeyProblem(key, allowPrefix);
  if (problem) throw new UsageError('sluice locks', problem);
}

function ago(ms: number): string {
  return formatDuration(Math.max(0, Math.round(ms / 1000) * 1000));
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const sub = args[0];
  if (sub === undefined) throw new UsageError('sluice locks', 'missing SUBCOMMAND (list, add, rm, allow, disallow, allowed, sweep)');
  const cmd = `sluice locks ${sub}`;
  const parsed = parseArgs(cmd, args.slice(1), OPTIONS);
  const json = parsed.options.has('json');
  let pos: Record<string, string | undefined>;
  switch (sub) {
    case 'list':
    case 'allowed':
    case 'sweep':
      pos = takePositionals(cmd, parsed, []);
      break;
    case 'add':
      pos = takePositionals(cmd, parsed, ['KEY', 'DURATION'], ['REASON']);
      checkKey(pos['KEY'] as string, false);
      {
        const ms = parseDuration(pos['DURATION'] as string);
        if (typeof ms === 'string') throw new UsageError(cmd, ms);
        if (ms <= 0) throw new UsageError(cmd, 'a lock needs a duration above 0');
      }
      break;
    case 'rm':
    case 'disallow':
      pos = takePositionals(cmd, parsed, ['KEY']);
      break;
    case 'allow':
      pos = takePositionals(cmd, parsed, ['KEY'], ['NOTE']);
      checkKey(pos['KEY'] as string, true);
      break;
    default:
      throw new UsageError('sluice locks', `unknown subcommand "${sub}" (one of: list, add, rm, allow, disallow, allowed, sweep)`);
  }
  const store = await openStore(parsed, io);
  try {
    const now = Date.now();
    switch (sub) {
      case 'list': {
        const locks = await store.list();
        if (json) io.stdout(JSON.stringify(locks) + '\n');
        else if (locks.length === 0) io.stdout('no locks\n');
        else {
          io.stdout(`${'KEY'.padEnd(40)} ${'LEFT'.padEnd(10)} ${'SOURCE'.padEnd(20)} REASON\n`);
          for (const l of locks) io.stdout(`${l.key.padEnd(40)} ${ago(l.expiresAt - now).padEnd(10)} ${l.source.padEnd(20)} ${l.reason}\n`);
        }
        return EXIT.OK;
      }
      case 'add': {
        const key = pos['KEY'] as string;
        const ms = parseDuration(pos['DURATION'] as string) as number; // checked above
        const r = await store.lock(key, ms, pos['REASON'] ?? 'manual', 'manual');
        if (r.allowListed) {
          io.stderr(`${cmd}: ${key} is allow-listed and cannot be locked\n`);
          return EXIT.ERROR;
        }
        io.stdout(`${r.created ? 'locked' : 'already locked'} ${key} for ${ago((r.entry?.expiresAt ?? now) - now)}\n`);
        return EXIT.OK;
      }
      case 'rm':
      case 'disallow': {
        const key = pos['KEY'] as string;
        const removed = sub === 'rm' ? await store.unlock(key) : await store.disallow(key);
        if (!removed) {
          io.stderr(`${cmd}: ${key} is not ${sub === 'rm' ? 'locked' : 'allow-listed'}\n`);
          return EXIT.ERROR;
        }
        io.stdout(`${sub === 'rm' ? 'unlocked' : 'removed from the allow list:'} ${key}\n`);
        return EXIT.OK;
      }
      case 'allow': {
        const key = pos['KEY'] as string;
        await store.allow(key, pos['NOTE'] ?? '');
        io.stdout(`allow-listed ${key}\n`);
        return EXIT.OK;
      }
      case 'allowed': {
        const entries = await store.listAllowed();
        if (json) io.stdout(JSON.stringify(entries) + '\n');
        else if (entries.length === 0) io.stdout('no allow-list entries\n');
        else for (const e of entries) io.stdout(`${e.key.padEnd(40)} ${e.note}\n`);
        return EXIT.OK;
      }
      default: {
        io.stdout(`swept ${await store.sweep()} expired lock(s)\n`);
        return EXIT.OK;
      }
    }
  } finally {
    await store.close();
  }
}
