/** `sluice run`: the daemon in the foreground, until SIGTERM or SIGINT; SIGHUP reloads. */
import { DiagnosticsError, formatDiagnostic } from '../core/errors.js';
import { Daemon } from '../daemon/daemon.js';
import { builtinDoors } from '../daemon/door-wiring.js';
import { optionValue, parseArgs, takePositionals, type OptionSpec } from './arg-parser.js';
import { EXIT, type CliIO } from './cli-io.js';

export const help = `Usage: sluice run [-c CONFIG]

Runs the gateway in the foreground with every door the configuration enables, logging to standard output (or
log.file). Use a service manager (systemd, runit) to run it in the background.

Signals:
  SIGTERM, SIGINT   stop accepting, let sessions finish for up to drain_timeout, close the stores, exit 0
  SIGHUP            reload: the configuration and rules are checked completely first; a bad one is refused
                    (errors logged) and the running one keeps serving. Sessions in progress keep the rules they
                    started with; listeners whose address or settings changed are restarted. Also reopens
                    log.file (for logrotate).
  SIGUSR1           log the status: one line per door (addresses, sessions in progress) and a summary
                    (uptime, reloads done and refused, rules, sessions, doors still draining).

Options:
  -c, --config FILE   the configuration (default: conf/sluice.yaml)
  -h, --help          this help

Exit codes: 0 stopped by a signal, 1 could not start (configuration, rules, or a port in use) or stopped by an
internal error (logged), 64 usage error.
`;

const OPTIONS: readonly OptionSpec[] = [{ name: 'config', short: 'c', value: 'FILE' }];

export async function run(args: string[], io: CliIO): Promise<number> {
  const parsed = parseArgs('sluice run', args, OPTIONS);
  takePositionals('sluice run', parsed, []);
  const file = optionValue(parsed, 'config') ?? 'conf/sluice.yaml';
  // Signal handlers go in before the daemon starts, so a signal that arrives while it starts (or right after its
  // "sluice started" line) is never the default action (kill): a stop signal then stops it once it is up.
  let daemon: Daemon | undefined;
  let stopRequested = false;
  const onStop = (signal: NodeJS.Signals): void => {
    stopRequested = true;
    daemon?.logger.info({ signal }, 'signal received');
    void daemon?.stop();
  };
  const onUsr1 = (): void => daemon?.logStatus();
  const onHup = (): void => {
    // While starting, the configuration is being read anyway: nothing to reload.
    daemon?.logger.info({ signal: 'SIGHUP' }, 'signal received');
    void daemon?.reload();
  };
  // A bug that escapes every handler: log it through the daemon's logger, stop at once, exit 1 (the service
  // manager restarts us) instead of dying with a bare stack trace on stderr.
  let failed = false;
  const onFatal = (err: unknown): void => {
    failed = true;
    if (!daemon) {
      io.stderr(`sluice run: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      return;
    }
    daemon.logger.error({ err }, 'internal error; stopping');
    void daemon.stop(0);
  };
  const handlers: Array<[string, (...a: never[]) => void]> = [
    ['SIGTERM', onStop],
    ['SIGINT', onStop],
    ['SIGHUP', onHup],
    ['SIGUSR1', onUsr1],
    ['uncaughtException', onFatal],
    ['unhandledRejection', onFatal],
  ];
  for (const [event, h] of handlers) process.on(event, h as (...a: unknown[]) => void);
  try {
    try {
      daemon = await Daemon.start({ configPath: file, cwd: io.cwd, registry: builtinDoors() });
    } catch (err) {
      if (err instanceof DiagnosticsError) {
        for (const d of err.diagnostics) io.stderr(formatDiagnostic(d) + '\n');
        io.stderr(`sluice run: not started: ${err.diagnostics.length} problem${err.diagnostics.length === 1 ? '' : 's'} in the configuration or rules\n`);
      } else {
        io.stderr(`sluice run: not started: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      return EXIT.ERROR;
    }
    if (stopRequested) {
      daemon.logger.info({}, 'stop requested while starting');
      void daemon.stop();
    }
    await daemon.stopped;
  } finally {
    for (const [event, h] of handlers) process.off(event, h as (...a: unknown[]) => void);
  }
  return failed ? EXIT.ERROR : EXIT.OK;
}
