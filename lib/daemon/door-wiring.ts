/**
 * Maps each door's config section onto its module's options and registers the factory. Wiring a new door is
 * one `register` call here.
 */
import { createInterceptDoor, type InterceptDoorOptions } from '../intercept/intercept-door.js';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFilterDoor } from '../milter/filter-door.js';
import { createMilterDoor, type MilterDoorOptions } from '../milter/milter-door.js';
import type { InterceptListenerConfig, MilterConfig, SluiceConfig } from './config-types.js';
import { createPolicyDoor } from '../milter/policy-door.js';
import { formatCidr, type ListenAddress } from './config-units.js';
import { DoorRegistry } from './door-registry.js';

/** Milter-style listen spec: "inet:PORT@HOST" or "unix:/path". */
export function milterListen(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `inet:${a.port}@${a.host}`;
}

/** The milter section of the configuration as the milter door's options. */
export function milterDoorOptions(s: MilterConfig): MilterDoorOptions {
  return {
    listen: milterListen(s.listen),
    maxPacket: s.maxPacket,
    readTimeoutMs: s.timeout,
    progressIntervalMs: s.progressInterval,
    noReply: s.noReply,
    delayReject: s.delayReject,
    socketMode: s.socketMode,
    name: 'milter',
  };
}

export function builtinDoors(): DoorRegistry {
  return new DoorRegistry()
    .register('intercept', (s, config, deps) => createInterceptDoor(interceptDoorOptions(s, config), deps))
    .register('milter', (s, _config, deps) => createMilterDoor(milterDoorOptions(s), deps))
    .register('filter', (s, config, deps) => {
      return createFilterDoor(
        {
          listen: s.listen,
          nextHop: s.nextHop,
          xforward: s.xforward,
          maxMessageSize: s.maxMessageSize,
          allowFrom: s.allowFrom.map(formatCidr),
          spoolDir: spoolDir(config),
          connectTimeoutMs: config.limits.connectTimeout,
        },
        deps,
      );
    })
    .register('policyd', (s, _config, deps) =>
      createPolicyDoor({ listen: s.listen, maxRequest: s.maxRequest, allowFrom: s.allowFrom.map(formatCidr), acceptAction: s.acceptAction }, deps),
    );
}

/** The intercept worker's entry module (next to this one). */
const INTERCEPT_WORKER = fileURLToPath(new URL('./intercept-worker-main.js', import.meta.url));

/** An intercept listener's config section as the intercept door's options. */
export function interceptDoorOptions(s: InterceptListenerConfig, config: SluiceConfig): InterceptDoorOptions {
  return {
    name: s.name,
    listeners: [
      {
        listen: { ip: s.listen.host, port: s.listen.port },
        mode: s.mode,
        ...(s.upstream ? { upstream: { ip: s.upstream.host, port: s.upstream.port } } : {}),
        ...(s.mode === 'proxy' ? { proxyTrusted: s.proxyTrusted.map(formatCidr) } : {}),
        proxyHeaderTimeoutMs: s.proxyHeaderTimeout,
        maxPending: s.maxPending,
        transparent: s.transparent,
        bindClientPort: s.bindPort,
      },
    ],
    starttls: s.starttls,
    bareLf: s.bareLf === 'normalize' ? 'normalise' : 'reject',
    holdMaxSize: s.holdMaxSize,
    ...(s.holdMessagesUpTo > 0 ? { holdMessagesUpTo: s.holdMessagesUpTo, holdMemory: s.holdMemory, holdDir: s.holdDir !== undefined ? existingDir(s.holdDir, `intercept listener "${s.name}": hold_dir`) : spoolDir(config) } : {}),
    greetDelay: s.greetDelay,
    scanReadAhead: s.scanReadAhead,
    scanReadAheadTotal: s.scanReadAheadTotal,
    ...(s.workers > 1 ? { workers: { count: s.workers, entry: INTERCEPT_WORKER, args: [config.file, process.cwd(), s.name] } } : {}),
  };
}

/** A directory configured by the operator: it must exist (the door makes its private 0700 directory inside). */
function existingDir(dir: string, what: string): string {
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new Error(`${what}: ${dir} is not an existing directory`);
  return dir;
}

/** state_dir/spool: parent of the doors' private spool directories. */
function spoolDir(config: SluiceConfig): string {
  const dir = join(config.stateDir, 'spool');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}
