/**
 * The daemon's lifecycle: start (load, build, bind every door, drop privileges), reload (SIGHUP: build the new
 * configuration and rules completely, then swap; a bad one is refused and the old one keeps serving), and stop
 * (SIGTERM/SIGINT: stop accepting, drain within drain_timeout, close stores).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { configureAddressPrivacy } from '../core/address-privacy.js';
import { DiagnosticsError, formatDiagnostic } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { buildRuntime, type Runtime } from './compose.js';
import { loadConfig } from './config-loader.js';
import type { SluiceConfig } from './config-types.js';
import { planDoors, samePlan, type DoorPlan, type DoorRegistry } from './door-registry.js';
import type { Door } from './door.js';
import { createDaemonLogger, type DaemonLogger } from './logger.js';
import { dropPrivileges } from './privileges.js';

export interface DaemonOptions {
  readonly configPath: string;
  readonly cwd?: string;
  readonly registry: DoorRegistry;
  /** Send log lines here instead of the configured destination (tests). */
  readonly logWrite?: (line: string) => void;
}

interface RunningDoor {
  readonly plan: DoorPlan;
  readonly door: Door;
  /** The runtime whose deps it was built or last updated with. */
  runtime: Runtime;
}

export interface DaemonStatus {
  readonly pid: number;
  readonly uptimeMs: number;
  readonly config: string;
  readonly reloads: number;
  readonly reloadsRefused: number;
  readonly lastReload?: string;
  readonly rules: number;
  readonly doors: ReadonlyArray<{ readonly key: string; readonly kind: string; readonly addresses: readonly string[]; readonly activeSessions: number }>;
  /** Doors a reload replaced that are still draining. */
  readonly draining: number;
}

export interface ReloadOutcome {
  readonly ok: boolean;
  readonly kept: readonly string[];
  readonly started: readonly string[];
  readonly stopped: readonly string[];
}

/** How long a restarted listener waits for its old socket to be released. */
const REBIND_WAIT_MS = 3000;

export class Daemon {
  private readonly doors = new Map<string, RunningDoor>();
  /** Runtimes replaced by a reload, closed once their sessions had time to finish. */
  private readonly retired = new Set<{ runtime: Runtime; timer: NodeJS.Timeout; keepLocks: boolean }>();
  private busy: Promise<unknown> = Promise.resolve();
  /** Doors a reload removed or replaced, still draining. */
  private readonly draining = new Set<Promise<void>>();
  private stopping: Promise<void> | undefined;
  private resolveStopped!: () => void;
  /** Resolves once the daemon has stopped. */
  readonly stopped: Promise<void> = new Promise((r) => (this.resolveStopped = r));

  private readonly startedAt = Date.now();
  private reloads = { ok: 0, refused: 0, last: undefined as string | undefined };

  private constructor(
    private readonly options: DaemonOptions,
    private config: SluiceConfig,
    private log: DaemonLogger,
    private runtime: Runtime,
  ) {}

  get logger(): Logger {
    return this.log.logger;
  }
  get configuration(): SluiceConfig {
    return this.config;
  }
  /** Running doors by key ("intercept:edge", "milter"). */
  get runningDoors(): ReadonlyMap<string, Door> {
    return new Map([...this.doors].map(([k, d]) => [k, d.door]));
  }

  /** Loads the configuration and starts every door. Throws DiagnosticsError for a bad configuration or rules. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const config = await loadConfig(options.configPath, options.cwd);
    configureAddressPrivacy(config.log.addresses, config.log.hashSalt);
    const log = createDaemonLogger(config.log, options.logWrite ? { write: options.logWrite } : {});
    let runtime: Runtime;
    try {
      runtime = await buildRuntime(config, log.logger);
    } catch (err) {
      await log.flush();
      throw err;
    }
    const daemon = new Daemon(options, config, log, runtime);
    try {
      for (const plan of planDoors(config)) await daemon.startDoor(plan, runtime);
      await log.flush();
      dropPrivileges(config.user, config.group, config.stateDir, log.logger, {
        files: config.log.file ? [config.log.file] : [],
        keepNetAdmin: config.intercept.some((l) => l.transparent || l.mode === 'tproxy'),
      });
    } catch (err) {
      log.logger.error({ err }, 'start failed');
      await daemon.stop(0);
      throw err;
    }
    log.logger.info(
      { config: config.file, doors: [...daemon.doors.keys()], rules: runtime.policy.files.length, ...(runtime.policy.rules !== undefined ? { rule_count: runtime.policy.rules } : {}), pid: process.pid },
      'sluice started',
    );
    return daemon;
  }

  private async startDoor(plan: DoorPlan, runtime: Runtime): Promise<RunningDoor> {
    // Every door binds its own `door` field (and a session id per session) on the logger it is given.
    const door = this.options.registry.create(plan, runtime.config, runtime.depsFor(plan.name, this.log.logger));
    await door.start();
    const running: RunningDoor = { plan, door, runtime };
    this.doors.set(plan.key, running);
    this.log.logger.info({ door: plan.name, kind: plan.kind, listen: plan.listen, addresses: door.addresses }, 'door listening');
    return running;
  }

  /** Starts a door whose address an old door is releasing: retries while the address is still in use. */
  private async startDoorRebind(plan: DoorPlan, runtime: Runtime): Promise<RunningDoor> {
    const deadline = Date.now() + REBIND_WAIT_MS;
    for (;;) {
      try {
        return await this.startDoor(plan, runtime);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw err;
        await delay(50);
      }
    }
  }

  /** What SIGUSR1 logs (smtp-gated's status screen, as one record per door plus a summary). */
  status(): DaemonStatus {
    return {
      pid: process.pid,
      uptimeMs: Date.now() - this.startedAt,
      config: this.config.file,
      reloads: this.reloads.ok,
      reloadsRefused: this.reloads.refused,
      ...(this.reloads.last ? { lastReload: this.reloads.last } : {}),
      rules: this.runtime.policy.rules,
      doors: [...this.doors.values()].map((d) => ({ key: d.plan.key, kind: d.plan.kind, addresses: d.door.addresses, activeSessions: d.door.activeSessions })),
      draining: this.draining.size,
    };
  }

  /** SIGUSR1: one log line per door and a summary. */
  logStatus(): void {
    const s = this.status();
    for (const d of s.doors) this.log.logger.info({ door: d.key, kind: d.kind, addresses: d.addresses, active_sessions: d.activeSessions }, 'status door');
    this.log.logger.info(
      { pid: s.pid, uptime_s: Math.round(s.uptimeMs / 1000), reloads: s.reloads, reloads_refused: s.reloadsRefused, ...(s.lastReload ? { last_reload: s.lastReload } : {}), rules: s.rules, active_sessions: s.doors.reduce((n, d) => n + d.activeSessions, 0), draining_doors: s.draining },
      'status',
    );
  }

  /** SIGHUP. Serialised: a reload waits for the one before it. Never throws. */
  reload(): Promise<ReloadOutcome> {
    const next = this.busy.then(async () => {
      const r = await this.doReload();
      if (r.ok) {
        this.reloads.ok++;
        this.reloads.last = new Date().toISOString();
      } else if (!this.stopping) this.reloads.refused++;
      return r;
    });
    this.busy = next.catch(() => undefined);
    return next;
  }

  private async doReload(): Promise<ReloadOutcome> {
    const refused: ReloadOutcome = { ok: false, kept: [], started: [], stopped: [] };
    if (this.stopping) return refused;
    const logger = this.log.logger;
    this.log.reopen();
    logger.info({ config: this.config.file }, 'reloading configuration');
    let config: SluiceConfig;
    try {
      config = await loadConfig(this.options.configPath, this.options.cwd);
    } catch (err) {
      this.logRefusal(err);
      return refused;
    }
    // A new format or destination needs a new logger; it only replaces the old one if the reload commits.
    const oldLog = this.log;
    const logChanged = config.log.format !== this.config.log.format || config.log.file !== this.config.log.file;
    const newLog = logChanged ? createDaemonLogger(config.log, this.options.logWrite ? { write: this.options.logWrite } : {}) : oldLog;
    let runtime: Runtime;
    try {
      runtime = await buildRuntime(config, newLog.logger, this.runtime);
    } catch (err) {
      if (logChanged) await newLog.flush();
      this.logRefusal(err);
      return refused;
    }
    this.log = newLog;
    const old = this.runtime;
    const locksShared = runtime.locks === old.locks;
    if (config.user !== this.config.user || config.group !== this.config.group) {
      logger.warn({}, 'user/group changes take effect at the next restart');
    }

    const plans = planDoors(config);
    const newKeys = new Set(plans.map((p) => p.key));
    const keep: DoorPlan[] = [];
    const fresh: DoorPlan[] = [];
    const rebind: DoorPlan[] = [];
    const leaving = [...this.doors.values()].filter((d) => !newKeys.has(d.plan.key) || !plans.some((p) => samePlan(p, d.plan)));
    const leavingAddresses = new Set(leaving.map((d) => d.plan.listen));
    for (const p of plans) {
      const cur = this.doors.get(p.key);
      if (cur && samePlan(cur.plan, p)) keep.push(p);
      else if (leavingAddresses.has(p.listen) && !p.listen.endsWith(':0')) rebind.push(p);
      else fresh.push(p);
    }

    // 1. Doors on new addresses start before anything is touched; if one fails, the reload is refused whole.
    const startedFresh: RunningDoor[] = [];
    const previousEntries = new Map(leaving.map((d) => [d.plan.key, d]));
    try {
      for (const p of fresh) {
        const prev = this.doors.get(p.key);
        const r = await this.startDoor(p, runtime);
        startedFresh.push(r);
        if (prev) this.doors.set(p.key, prev); // not swapped in until the reload commits
      }
    } catch (err) {
      for (const r of startedFresh) {
        await r.door.stop(0).catch(() => undefined);
        if (!previousEntries.has(r.plan.key)) this.doors.delete(r.plan.key);
      }
      for (const [k, d] of previousEntries) this.doors.set(k, d);
      await runtime.close(locksShared);
      if (logChanged) {
        await this.log.flush();
        this.log = oldLog;
      }
      this.logRefusal(err);
      return refused;
    }

    // 2. Commit: from here on the new configuration is the running one.
    this.config = config;
    this.runtime = runtime;
    configureAddressPrivacy(config.log.addresses, config.log.hashSalt);
    this.log.setLevel(config.log.level);
    if (logChanged) void oldLog.flush();
    for (const r of startedFresh) this.doors.set(r.plan.key, r);
    for (const p of keep) {
      const cur = this.doors.get(p.key) as RunningDoor;
      cur.door.update(runtime.depsFor(p.name, this.log.logger));
      cur.runtime = runtime;
    }
    const drainMs = old.config.drainTimeout;
    const stopped: string[] = [];
    for (const d of leaving) {
      if (!startedFresh.some((r) => r.plan.key === d.plan.key)) this.doors.delete(d.plan.key);
      stopped.push(d.plan.key);
      const draining: Promise<void> = d.door
        .stop(drainMs)
        .catch((err: unknown) => this.log.logger.warn({ err, door: d.plan.name }, 'error while stopping a door'))
        .finally(() => this.draining.delete(draining));
      this.draining.add(draining);
      this.log.logger.info({ door: d.plan.name, listen: d.plan.listen }, 'door stopping (reload)');
    }

    // 3. Listeners restarted on an address the old door is releasing.
    const started = startedFresh.map((r) => r.plan.key);
    for (const p of rebind) {
      try {
        await this.startDoorRebind(p, runtime);
        started.push(p.key);
      } catch (err) {
        this.log.logger.error({ err, door: p.name, listen: p.listen }, 'door could not be restarted with its new settings; it is down until the next reload');
      }
    }

    this.retire(old, locksShared, drainMs);
    this.log.logger.info({ config: config.file, kept: keep.map((p) => p.key), started, stopped, rules: runtime.policy.files.length }, 'configuration reloaded');
    return { ok: true, kept: keep.map((p) => p.key), started, stopped };
  }

  private logRefusal(err: unknown): void {
    const logger = this.log.logger;
    // (this.log is the running logger here: a refused reload never changes it)
    if (err instanceof DiagnosticsError) {
      for (const d of err.diagnostics) logger.error({ code: d.code, ...(d.location ? { file: d.location.file, line: d.location.line, column: d.location.column } : {}), detail: formatDiagnostic(d) }, d.message);
    } else {
      logger.error({ err }, 'reload failed');
    }
    logger.error({ config: this.config.file }, 'reload refused; the running configuration stays in force');
  }

  /** Closes a replaced runtime once sessions that started under it had drain_timeout to finish. */
  private retire(runtime: Runtime, keepLocks: boolean, afterMs: number): void {
    const entry = {
      runtime,
      keepLocks,
      timer: setTimeout(() => {
        this.retired.delete(entry);
        void runtime.close(keepLocks);
      }, afterMs + 1000),
    };
    entry.timer.unref();
    this.retired.add(entry);
  }

  /** SIGTERM/SIGINT: stop accepting, give sessions `drainMs` (default drain_timeout), close everything. */
  stop(drainMs?: number): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop(drainMs ?? this.config.drainTimeout);
    return this.stopping;
  }

  private async doStop(drainMs: number): Promise<void> {
    const logger = this.log.logger;
    await this.busy.catch(() => undefined);
    const active = [...this.doors.values()].reduce((n, d) => n + d.door.activeSessions, 0);
    logger.info({ doors: [...this.doors.keys()], active_sessions: active, drain_ms: drainMs }, 'stopping');
    await Promise.all(
      [...this.doors.values()].map((d) =>
        d.door.stop(drainMs).catch((err: unknown) => logger.warn({ err, door: d.plan.name }, 'error while stopping a door')),
      ),
    );
    this.doors.clear();
    await Promise.all([...this.draining]);
    for (const r of this.retired) {
      clearTimeout(r.timer);
      await r.runtime.close(r.keepLocks);
    }
    this.retired.clear();
    await this.runtime.close(false);
    logger.info({}, 'sluice stopped');
    await this.log.flush();
    this.resolveStopped();
  }
}
