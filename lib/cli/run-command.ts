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
  let daemon: Daemon;
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
  const onStop = (signal: NodeJS.Signals): void => {
    daemon.logger.info({ signal }, 'signal received');
    void daemon.stop();
  };
  const onUsr1 = (): void => daemon.logStatus();
  const onHup = (): void => {
    daemon.logger.info({ signal: 'SIGHUP' }, 'signal received');
    void daemon.reload();
  };
  // A bug that escapes every handler: log it through the daemon's logger, stop at once, exit 1 (the service
  // manager restarts us) instead of dying with a bare stack trace on stderr.
  let failed = false;
  const onFatal = (err: unknown): void => {
    failed = true;
    daemon.logger.error({ err }, 'internal error; stopping');
    void daemon.stop(0);
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  process.on('uncaughtException', onFatal);
  process.on('unhandledRejection', onFatal);
  try {
    await daemon.stopped;
  } finally {
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onHup);
    process.off('SIGUSR1', onUsr1);
    process.off('uncaughtException', onFatal);
    process.off('unhandledRejection', onFatal);
  }
  return failed ? EXIT.ERROR : EXIT.OK;
}
