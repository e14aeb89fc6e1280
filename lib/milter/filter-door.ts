/**
 * The filter door: an SMTP server for Postfix's after-queue `content_filter` or before-queue `smtpd_proxy_filter`
 * that judges each message and re-injects it into the next hop (see filter-session.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Door, DoorDeps } from '../daemon/door.js';
import { FilterSession, type FilterQuarantine } from './filter-session.js';

export type FilterListen = { readonly kind: 'tcp'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

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
  /** Where quarantined messages go; without it a quarantine verdict tempfails (the mail stays queued). */
  readonly quarantine?: FilterQuarantine;
  readonly connectTimeoutMs?: number;
}

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

function blockList(cidrs: readonly string[]): BlockList {
  const bl = new BlockList();
  for (const c of cidrs) {
    const [addr = '', bits] = c.split('/');
    const family = isIP(addr);
    if (family === 0) throw new Error(`filter door allowFrom: "${c}" is not an address or CIDR`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) bl.addAddress(addr, type);
    else bl.addSubnet(addr, Number(bits), type);
  }
  return bl;
}

function allowed(bl: BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped ? mapped[1]! : address;
  const family = isIP(ip);
  return family !== 0 && bl.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

export function createFilterDoor(options: FilterDoorOptions, initialDeps: DoorDeps): Door {
  let deps = initialDeps;
  const allow = blockList(options.allowFrom ?? LOOPBACK);
  const sessions = new Set<FilterSession>();
  const addresses: string[] = [];
  let server: Server | undefined;
  let spoolDir: string | undefined;

  const onConnection = (socket: Socket): void => {
    const d = deps;
    const log = d.logger.child({ door: 'filter' });
    if (options.listen.kind === 'tcp' && !allowed(allow, socket.remoteAddress)) {
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
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          const done = (): void => {
            srv.off('error', reject);
            resolve();
          };
          if (listen.kind === 'unix') srv.listen(listen.path, done);
          else srv.listen(listen.port, listen.host, done);
        });
      } catch (err) {
        rmSync(spoolDir, { recursive: true, force: true });
        throw err;
      }
      srv.on('error', (err) => deps.logger.error({ door: 'filter', err: err.message }, 'filter listener error'));
      if (listen.kind === 'unix') addresses.push(`unix:${listen.path}`);
      else {
        const a = srv.address();
        const port = typeof a === 'object' && a ? a.port : listen.port;
        addresses.push(isIP(listen.host) === 6 ? `[${listen.host}]:${port}` : `${listen.host}:${port}`);
      }
      server = srv;
      deps.logger.info({ door: 'filter', addresses, nextHop: `${options.nextHop.host}:${options.nextHop.port}` }, 'filter door listening');
    },
    async stop(drainMs: number) {
      const srv = server;
      server = undefined;
      const closed = srv ? new Promise<void>((resolve) => srv.close(() => resolve())) : Promise.resolve();
      for (const s of sessions) s.drain();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...sessions].map((s) => s.done)), new Promise((r) => (timer = setTimeout(r, drainMs)))]);
      if (timer) clearTimeout(timer);
      for (const s of sessions) s.destroy();
      await closed;
      if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
      addresses.length = 0;
    },
  };
}
