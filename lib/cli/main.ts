/**
 * The `sluice` command. bin/sluice.js calls main(argv) and sets the exit code from its result; main never calls
 * process.exit itself, so tests can call it in-process.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nearest } from '../core/edit-distance.js';
import { UsageError, wantsHelp } from './arg-parser.js';
import { EXIT, processIO, type CliCommand, type CliIO } from './cli-io.js';

interface CommandEntry {
  /** The words that name it: ["policy", "test"]. */
  readonly words: readonly string[];
  readonly summary: string;
  /** Loaded lazily: `sluice version` must not pay for the daemon's imports. */
  readonly load: () => Promise<CliCommand>;
}

/** The command table. Each command lives in its own module exporting `help` and `run`. */
export const COMMANDS: readonly CommandEntry[] = [
  { words: ['run'], summary: 'run the gateway with a configuration file', load: () => import('./run-command.js') },
  { words: ['check'], summary: 'validate a configuration and every rule file it names', load: () => import('./check-command.js') },
  { words: ['policy', 'test'], summary: 'run rule tests (exit 2 when a test fails)', load: () => import('./policy-test-command.js') },
  { words: ['locks'], summary: 'list, add and remove host locks and allow-list entries', load: () => import('./locks-command.js') },
  { words: ['quarantine'], summary: 'list, show, release and delete quarantined messages', load: () => import('./quarantine-command.js') },
  { words: ['version'], summary: 'print the version', load: async () => versionCommand },
  { words: ['help'], summary: 'show help for sluice or for one command', load: async () => helpCommand },
];

export function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sluice' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      /* not here; go up */
    }
    const up = dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

export const HELP = `Usage: sluice COMMAND [ARGS...]

sluice is an SMTP policy gateway: one rule engine behind a transparent SMTP interceptor,
a Postfix milter, an after-queue content filter and a policy-delegation server.

Commands:
${COMMANDS.map((c) => `  ${c.words.join(' ').padEnd(14)}${c.summary}`).join('\n')}

Global options:
  -h, --help      show this help (or, after a command, that command's help)
  -V, --version   print the version

Run 'sluice COMMAND --help' for the options of one command.
Exit codes: 0 ok, 1 error, 2 policy test failure, 64 usage error.
`;

const versionCommand: CliCommand = {
  help: 'Usage: sluice version\n\nPrints the version of sluice.\n',
  run: async (args, io) => {
    if (args.length > 0) throw new UsageError('sluice version', `unexpected argument "${args[0]}"`);
    io.stdout(`sluice ${version()}\n`);
    return EXIT.OK;
  },
};

const helpCommand: CliCommand = {
  help: 'Usage: sluice help [COMMAND]\n\nShows the help of sluice or of one command.\n',
  run: async (args, io) => {
    if (args.length === 0) {
      io.stdout(HELP);
      return EXIT.OK;
    }
    const found = findCommand(args);
    if (!found || found.rest.length > 0) throw new UsageError('sluice help', `unknown command "${args.join(' ')}"`);
    io.stdout((await found.entry.load()).help);
    return EXIT.OK;
  },
};

function findCommand(argv: readonly string[]): { entry: CommandEntry; rest: string[] } | undefined {
  let best: CommandEntry | undefined;
  for (const c of COMMANDS) {
    if (c.words.every((w, i) => argv[i] === w) && (!best || c.words.length > best.words.length)) best = c;
  }
  return best ? { entry: best, rest: argv.slice(best.words.length) } : undefined;
}

/** Commands whose first word matches but whose full name does not ("sluice policy" without "test"). */
function partialMatches(word: string): CommandEntry[] {
  return COMMANDS.filter((c) => c.words[0] === word);
}

export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    io.stderr(HELP);
    return EXIT.USAGE;
  }
  if (first === '--help' || first === '-h') {
    io.stdout(HELP);
    return EXIT.OK;
  }
  if (first === '--version' || first === '-V') {
    io.stdout(`sluice ${version()}\n`);
    return EXIT.OK;
  }
  const found = findCommand(argv);
  if (!found) {
    const partial = partialMatches(first);
    if (partial.length > 0) {
      io.stderr(`sluice ${first}: missing subcommand (one of: ${partial.map((c) => c.words.slice(1).join(' ')).join(', ')})\nRun 'sluice --help' for usage.\n`);
    } else if (first.startsWith('-')) {
      io.stderr(`sluice: unknown option ${first}\nRun 'sluice --help' for usage.\n`);
    } else {
      io.stderr(`sluice: unknown command "${first}"${suggestCommand(first)}\nRun 'sluice --help' for usage.\n`);
    }
    return EXIT.USAGE;
  }
  const name = `sluice ${found.entry.words.join(' ')}`;
  let command: CliCommand;
  try {
    command = await found.entry.load();
  } catch (err) {
    io.stderr(`${name}: cannot load the command: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.ERROR;
  }
  if (wantsHelp(found.rest)) {
    io.stdout(command.help);
    return EXIT.OK;
  }
  try {
    return await command.run(found.rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`${err.message}\nRun '${name} --help' for usage.\n`);
      return EXIT.USAGE;
    }
    io.stderr(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.ERROR;
  }
}

function suggestCommand(word: string): string {
  const best = nearest(word, COMMANDS.map((c) => c.words[0] as string), { tolerance: 2, ignoreCase: false });
  return best !== undefined ? ` (did you mean "${best}"?)` : '';
}
