/**
 * The filter door: an SMTP server for Postfix's after-queue `content_filter` or before-queue `smtpd_proxy_filter`
 * that judges each message and re-injects it into the next hop (see filter-session.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Door, DoorDeps } from '../daemon/door.js';
import { allowList, boundAddress, closeAndDrain, isAllowed, listenOn, LOOPBACK_ONLY, type DoorListen } from './door-listener.js';
import { FilterSession, type FilterQuarantine } from './filter-session.js';

export type FilterListen = DoorListen;

export interface FilterDoorOptions {
  readonly listen: FilterListen;
  /** Where messages are re-injected (the smtpd with `-o content_filter=`), e.g. 127.0.0.1:10026. */
  readonly nextHop: { readonly host: string; readonly port: number };
  /** Accept XFORWARD from Postfix and pass it on (default true). */
  readonly xforward?: boolean;
  /** Largest message (default deps.limits.messageSize). */
  readonly maxMessageSize?: number;
  /** TCP clients allowed to connect; default loopback only (XFORWARD must only be trusted from Postfix). */
  readonly allowFrom?: readonly string[];
  /** Parent directory for the private spool directory (default the OS temp dir). */
  readonly spoolDir?: string;
  /** Where quarantined messages go instead of `deps.quarantine`; with neither a quarantine verdict tempfails (the mail stays queued). */
  readonly quarantine?: FilterQuarantine;
  readonly connectTimeoutMs?: number;
}

export function createFilterDoor(options: FilterDoorOptions, initialDeps: DoorDeps): Door {
  let deps = initialDeps;
  const allow = allowList(options.allowFrom ?? LOOPBACK_ONLY, 'filter');
  const sessions = new Set<FilterSession>();
  const addresses: string[] = [];
  let server: Server | undefined;
  let spoolDir: string | undefined;

  const onConnection = (socket: Socket): void => {
    const d = deps;
    const log = d.logger.child({ door: 'filter' });
    if (options.listen.kind === 'tcp' && !isAllowed(allow, socket.remoteAddress)) {
      log.warn({ peer: socket.remoteAddress }, 'filter connection from a client not in allowFrom; refused');
      socket.end('554 5.7.1 Access denied\r\n');
      return;
    }
    if (sessions.size >= d.limits.sessions) {
      socket.end('421 4.3.2 Too many sessions, try again later\r\n');
      return;
    }
    const session = new FilterSession(
      socket,
      d,
      {
        nextHop: {
          host: options.nextHop.host,
          port: options.nextHop.port,
          connectTimeoutMs: options.connectTimeoutMs ?? Math.min(d.limits.connectTimeout, 30_000),
          commandTimeoutMs: d.limits.commandTimeout,
          dataTimeoutMs: d.limits.dataTimeout,
        },
        xforward: options.xforward ?? true,
        maxMessageSize: options.maxMessageSize ?? (d.limits.messageSize > 0 ? d.limits.messageSize : 50 * 1024 * 1024),
        spoolDir: spoolDir!,
        ...(options.quarantine ? { quarantine: options.quarantine } : {}),
      },
      log,
    );
    sessions.add(session);
    void session.done.then(() => sessions.delete(session));
    void session.start();
  };

  return {
    name: 'filter',
    get addresses() {
      return addresses;
    },
    get activeSessions() {
      return sessions.size;
    },
    update(next: DoorDeps) {
      deps = next;
    },
    async start() {
      spoolDir = mkdtempSync(join(options.spoolDir ?? tmpdir(), 'sluice-filter-'));
      const srv = createServer(onConnection);
      const listen = options.listen;
      try {
        await listenOn(srv, listen);
      } catch (err) {
        rmSync(spoolDir, { recursive: true, force: true });
        throw err;
      }
      srv.on('error', (err) => deps.logger.error({ door: 'filter', err: err.message }, 'filter listener error'));
      addresses.push(boundAddress(srv, listen));
      server = srv;
      deps.logger.info({ door: 'filter', addresses, nextHop: `${options.nextHop.host}:${options.nextHop.port}` }, 'filter door listening');
    },
    async stop(drainMs: number) {
      const srv = server;
      server = undefined;
      await closeAndDrain(srv, sessions, drainMs);
      if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
      addresses.length = 0;
    },
  };
}
