/** `sluice quarantine`: list, show, release and delete quarantined messages. */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { QuarantineError, QuarantineStore, type QuarantineEntry } from '../daemon/quarantine-store.js';
import { optionValue, parseArgs, takePositionals, UsageError, type OptionSpec, type ParsedArgs } from './arg-parser.js';
import { EXIT, type CliIO } from './cli-io.js';

export const help = `Usage: sluice quarantine SUBCOMMAND [OPTIONS]

Works on the quarantine directory the configuration names (quarantine.dir), or on one given directly.

Subcommands:
  list                     quarantined messages: id, time, size, sender, recipients, reason
  show ID                  the sidecar (envelope, client, reason, rule, scan results) and the message headers
  release ID               re-send the message by SMTP to its recipients, then delete it (unless --keep)
  delete ID                delete the message and its sidecar

Where the quarantine is (one of):
  -c, --config FILE        the sluice configuration; default conf/sluice.yaml
      --dir DIR            a quarantine directory

Options:
      --json               machine-readable output (list, show)
      --raw                show: print the whole message instead of its headers
      --to HOST:PORT       release: where to send (default: the filter door's next_hop, if configured)
      --helo NAME          release: our EHLO name (default: the configured hostname)
      --keep               release: keep the entry after a successful release
  -h, --help               this help

Exit codes: 0 ok, 1 error (unknown id, release refused), 64 usage error.
`;

const OPTIONS: readonly OptionSpec[] = [
  { name: 'config', short: 'c', value: 'FILE' },
  { name: 'dir', value: 'DIR' },
  { name: 'json' },
  { name: 'raw' },
  { name: 'to', value: 'HOST:PORT' },
  { name: 'helo', value: 'NAME' },
  { name: 'keep' },
];

interface Context {
  /** Undefined when the directory does not exist yet (the daemon creates it at the first quarantine). */
  store: QuarantineStore | undefined;
  dir: string;
  nextHop?: { host: string; port: number };
  hostname: string;
}

/** Client-supplied text is shown with control characters escaped, so it cannot drive the terminal. */
function safe(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

async function openContext(parsed: ParsedArgs, io: CliIO, cmd: string): Promise<Context> {
  const dir = optionValue(parsed, 'dir');
  const config = optionValue(parsed, 'config');
  if (dir !== undefined && config !== undefined) throw new UsageError(cmd, 'give only one of --config and --dir');
  if (dir !== undefined) return { store: openStore(resolve(io.cwd, dir)), dir: resolve(io.cwd, dir), hostname: hostname() };
  const { loadConfig } = await import('../daemon/config-loader.js');
  const cfg = await loadConfig(resolve(io.cwd, config ?? 'conf/sluice.yaml'), io.cwd);
  return {
    store: openStore(cfg.quarantine.dir),
    dir: cfg.quarantine.dir,
    ...(cfg.filter ? { nextHop: { host: cfg.filter.nextHop.host, port: cfg.filter.nextHop.port } } : {}),
    hostname: cfg.hostname,
  };
}

function openStore(dir: string): QuarantineStore | undefined {
  return existsSync(dir) ? new QuarantineStore(dir, { create: false }) : undefined;
}

function parseHostPort(cmd: string, s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) throw new UsageError(cmd, `"${s}" is not HOST:PORT`);
  return { host: (m[1] ?? m[2]) as string, port };
}

function listLine(e: QuarantineEntry): string {
  const rcpts = e.recipients.length === 1 ? (e.recipients[0] ?? '') : `${e.recipients[0] ?? ''} (+${e.recipients.length - 1})`;
  return `${e.id}  ${e.time.slice(0, 19).replace('T', ' ')}  ${String(e.size).padStart(9)}  ${safe(e.sender || '<>').padEnd(30)}  ${safe(rcpts).padEnd(30)}  ${safe(e.reason)}\n`;
}

async function headersOf(store: QuarantineStore, id: string, max = 64 * 1024): Promise<string> {
  let text = '';
  for await (const chunk of store.openMessage(id)) {
    text += (chunk as Buffer).toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    if (end >= 0) return text.slice(0, end + 2);
    if (text.length > max) return text.slice(0, max) + '\r\n[... truncated]\r\n';
  }
  return text;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const sub = args[0];
  if (sub === undefined) throw new UsageError('sluice quarantine', 'missing SUBCOMMAND (list, show, release, delete)');
  const cmd = `sluice quarantine ${sub}`;
  const parsed = parseArgs(cmd, args.slice(1), OPTIONS);
  let id: string | undefined;
  switch (sub) {
    case 'list':
      takePositionals(cmd, parsed, []);
      break;
    case 'show':
    case 'release':
    case 'delete':
      id = takePositionals(cmd, parsed, ['ID'])['ID'];
      break;
    default:
      throw new UsageError('sluice quarantine', `unknown subcommand "${sub}" (one of: list, show, release, delete)`);
  }
  const json = parsed.options.has('json');
  let ctx: Context;
  try {
    ctx = await openContext(parsed, io, cmd);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    io.stderr(`${cmd}: ${(err as Error).message}\n`);
    return EXIT.ERROR;
  }
  const { store } = ctx;
  if (!store) {
    if (sub === 'list') {
      io.stdout(json ? '[]\n' : `quarantine is empty (${ctx.dir} does not exist yet)\n`);
      return EXIT.OK;
    }
    io.stderr(`${cmd}: no quarantined message ${safe(id ?? '')} (${ctx.dir} does not exist)\n`);
    return EXIT.ERROR;
  }
  try {
    if (sub === 'list') {
      const entries = await store.list();
      if (json) io.stdout(JSON.stringify(entries) + '\n');
      else if (entries.length === 0) io.stdout('quarantine is empty\n');
      else {
        io.stdout(`${'ID'.padEnd(29)}  ${'TIME'.padEnd(19)}  ${'SIZE'.padStart(9)}  ${'SENDER'.padEnd(30)}  ${'RECIPIENTS'.padEnd(30)}  REASON\n`);
        for (const e of entries) io.stdout(listLine(e));
      }
      return EXIT.OK;
    }
    const theId = id as string;
    const entry = await store.get(theId);
    if (!entry) {
      io.stderr(`${cmd}: no quarantined message ${safe(theId)}\n`);
      return EXIT.ERROR;
    }
    switch (sub) {
      case 'show': {
        if (parsed.options.has('raw')) {
          for await (const chunk of store.openMessage(theId)) io.stdout((chunk as Buffer).toString('latin1'));
          return EXIT.OK;
        }
        if (json) {
          io.stdout(JSON.stringify(entry) + '\n');
          return EXIT.OK;
        }
        const lines = [
          `id:         ${entry.id}`,
          `time:       ${entry.time}`,
          `size:       ${entry.size}`,
          `door:       ${entry.door}`,
          `session:    ${safe(entry.sessionId)}`,
          `client:     ${entry.client.ip}:${entry.client.port}${entry.clientName ? ` (${safe(entry.clientName)})` : ''}`,
          ...(entry.helo !== undefined ? [`helo:       ${safe(entry.helo)}`] : []),
          `sender:     ${safe(entry.sender || '<>')}`,
          ...entry.recipients.map((r, i) => `${i === 0 ? 'recipients: ' : '            '}${safe(r)}`),
          `reason:     ${safe(entry.reason)}`,
          ...(entry.rule ? [`rule:       ${safe(entry.rule)}`] : []),
          ...(entry.scan ? [`scan:       ${safe(JSON.stringify(entry.scan))}`] : []),
          '',
        ];
        io.stdout(lines.join('\n') + '\n');
        io.stdout((await headersOf(store, theId)).replace(/\r\n/g, '\n').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?'));
        return EXIT.OK;
      }
      case 'delete': {
        await store.remove(theId);
        io.stdout(`deleted ${theId}\n`);
        return EXIT.OK;
      }
      default: {
        const to = optionValue(parsed, 'to');
        const target = to !== undefined ? parseHostPort(cmd, to) : ctx.nextHop;
        if (!target) throw new UsageError(cmd, 'no --to HOST:PORT given and no filter next_hop configured');
        const { releaseMessage } = await import('../daemon/quarantine-release.js');
        let result;
        try {
          result = await releaseMessage({ ...target, helo: optionValue(parsed, 'helo') ?? ctx.hostname }, entry.sender, entry.recipients, store.openMessage(theId));
        } catch (err) {
          io.stderr(`${cmd}: sending to ${target.host}:${target.port} failed: ${(err as Error).message}\n`);
          return EXIT.ERROR;
        }
        for (const r of result.rejected) io.stderr(`${cmd}: recipient ${safe(r.rcpt)} refused: ${safe(r.reply)}\n`);
        if (!result.delivered) {
          io.stderr(`${cmd}: not delivered: ${safe(result.reply)}\n`);
          return EXIT.ERROR;
        }
        io.stdout(`released ${theId} to ${result.accepted.length} recipient(s) via ${target.host}:${target.port}: ${safe(result.reply)}\n`);
        if (!parsed.options.has('keep') && result.rejected.length === 0) await store.remove(theId);
        else if (result.rejected.length > 0) io.stdout(`kept ${theId} (some recipients were refused)\n`);
        return result.rejected.length === 0 ? EXIT.OK : EXIT.ERROR;
      }
    }
  } catch (err) {
    if (err instanceof QuarantineError) {
      io.stderr(`${cmd}: ${err.message}\n`);
      return EXIT.ERROR;
    }
    throw err;
  }
}
