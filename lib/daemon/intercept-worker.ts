/**
 * An intercept worker process (intercept listener with `workers: N`): loads the same configuration as the daemon,
 * builds its own runtime (rules, lock store connection, scanners, DNS), drops privileges, then runs the sessions
 * the daemon hands it over the IPC channel. It never listens itself; the daemon accepts and counts.
 *
 * Reload: on the daemon's word, after the daemon's own reload committed; sessions in progress keep their rules.
 * Stop: on the daemon's word, or on SIGTERM; SIGHUP, SIGINT and SIGUSR1 are the daemon's to act on (a signal sent to
 * the whole process group must not kill a worker).
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { configureAddressPrivacy } from '../core/address-privacy.js';
import { DiagnosticsError, formatDiagnostic } from '../core/errors.js';
import { normalizeIp } from '../intercept/address-util.js';
import { createInterceptSessionHost, type InterceptSessionHost } from '../intercept/intercept-door.js';
import type { AcceptedConnection } from '../intercept/listener.js';
import { isToWorker, type FromWorker, type ToWorker } from '../intercept/worker-messages.js';
import { buildRuntime, type Runtime } from './compose.js';
import { loadConfig } from './config-loader.js';
import type { SluiceConfig } from './config-types.js';
import { interceptDoorOptions } from './door-wiring.js';
import { createDaemonLogger, type DaemonLogger } from './logger.js';
import { dropPrivileges } from './privileges.js';

/** argv: CONFIG CWD LISTENER-NAME */
export async function runInterceptWorker(argv: readonly string[]): Promise<void> {
  const [configPath, cwd, name] = argv;
  const tell = (m: FromWorker, then?: () => void): void => {
    if (process.connected && process.send) process.send(m, undefined, {}, () => then?.());
    else then?.();
  };
  if (configPath === undefined || cwd === undefined || name === undefined || !process.send) {
    process.stderr.write('sluice intercept worker: started without the daemon (CONFIG CWD LISTENER and an IPC channel are needed)\n');
    process.exitCode = 2;
    return;
  }
  for (const sig of ['SIGHUP', 'SIGINT', 'SIGUSR1'] as const) process.on(sig, () => undefined);

  let config: SluiceConfig;
  let log: DaemonLogger;
  let runtime: Runtime;
  let host: InterceptSessionHost;
  /** What the start opened, for the cleanup if it fails half-way. */
  const opened: { log?: DaemonLogger; runtime?: Runtime } = {};
  try {
    config = await loadConfig(configPath, cwd);
    configureAddressPrivacy(config.log.addresses, config.log.hashSalt);
    log = opened.log = createDaemonLogger(config.log);
    runtime = opened.runtime = await buildRuntime(config, log.logger);
    const listener = config.intercept.find((l) => l.name === name);
    if (!listener) throw new Error(`no intercept listener named "${name}" in ${configPath}`);
    if (listener.transparent && !hasNetAdmin()) {
      throw new Error(`intercept listener "${name}" is transparent: its workers need CAP_NET_ADMIN, which a daemon that dropped root cannot pass to a worker it starts later; restart sluice (a reload cannot) to start them`);
    }
    host = createInterceptSessionHost(interceptDoorOptions(listener, config), runtime.depsFor(name, log.logger.child({ pid: process.pid })));
    dropPrivileges(config.user, config.group, config.stateDir, log.logger, {
      files: config.log.file ? [config.log.file] : [],
      keepNetAdmin: listener.transparent || listener.mode === 'tproxy',
    });
  } catch (err) {
    // Whatever was opened (lock store, DNS sockets) would keep the process alive: close it, then exit.
    await opened.runtime?.close(false).catch(() => undefined);
    await opened.log?.flush();
    tell({ t: 'failed', error: errorText(err) }, () => process.exit(1));
    return;
  }
  const logger = log.logger.child({ door: name, pid: process.pid });

  let stopping: Promise<void> | undefined;
  const stop = (drainMs: number): Promise<void> =>
    (stopping ??= (async () => {
      await host.stop(drainMs);
      await runtime.close(false);
      logger.info({}, 'intercept worker stopped');
      await log.flush();
      process.disconnect?.();
      // Timers of retired runtimes and sockets still closing must not hold the process.
      await delay(50);
      process.exit(0);
    })());

  let reloading = Promise.resolve();
  const reload = async (): Promise<void> => {
    log.reopen();
    try {
      const next = await loadConfig(configPath, cwd);
      const listener = next.intercept.find((l) => l.name === name);
      if (!listener) throw new Error(`no intercept listener named "${name}" any more`);
      const fresh = await buildRuntime(next, log.logger, runtime);
      const old = runtime;
      runtime = fresh;
      config = next;
      configureAddressPrivacy(next.log.addresses, next.log.hashSalt);
      log.setLevel(next.log.level);
      host.update(fresh.depsFor(name, log.logger.child({ pid: process.pid })));
      // Sessions that started under the old runtime keep it until they had the drain time to finish.
      const keepLocks = fresh.locks === old.locks;
      setTimeout(() => void old.close(keepLocks), next.drainTimeout + 1000).unref();
      logger.info({ config: next.file }, 'worker reloaded');
      tell({ t: 'reloaded', ok: true });
    } catch (err) {
      logger.error({ err: errorText(err) }, 'worker reload refused; the running configuration stays in force');
      tell({ t: 'reloaded', ok: false });
    }
  };

  process.on('message', (m: unknown, handle: unknown) => {
    if (!isToWorker(m)) return;
    if (m.t === 'session') {
      const socket = handle as Socket | undefined;
      if (!socket || stopping) {
        socket?.destroy();
        tell({ t: 'closed', token: m.token });
        return;
      }
      void host.adopt(accepted(m, socket), m.sessions).then(() => tell({ t: 'closed', token: m.token }));
    } else if (m.t === 'reload') {
      reloading = reloading.then(reload);
    } else {
      void stop(m.drainMs);
    }
  });
  // The daemon is gone (killed, crashed): finish quickly rather than serve unaccounted sessions.
  process.on('disconnect', () => void stop(Math.min(config.drainTimeout, 5000)));
  process.on('SIGTERM', () => void stop(config.drainTimeout));
  logger.info({}, 'intercept worker ready');
  tell({ t: 'ready' });
}

/** A start or reload failure as text: every diagnostic of a bad configuration, or the error's message. */
function errorText(err: unknown): string {
  return err instanceof DiagnosticsError ? err.diagnostics.map((d) => formatDiagnostic(d)).join('\n') : (err as Error).message;
}

/** CAP_NET_ADMIN in the effective set (root has it unless the container took it away). */
function hasNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m !== null && (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n;
  } catch {
    return false;
  }
}

function accepted(m: Extract<ToWorker, { t: 'session' }>, socket: Socket): AcceptedConnection {
  socket.on('error', () => undefined);
  return {
    socket,
    client: m.client,
    destination: m.destination,
    source: m.source,
    head: Buffer.from(m.head, 'base64'),
    local: { ip: normalizeIp(socket.localAddress ?? ''), port: socket.localPort ?? 0 },
    peer: { ip: normalizeIp(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 },
    ...(m.transparentSource ? { transparentSource: m.transparentSource } : {}),
  };
}
