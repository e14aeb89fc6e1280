/**
 * The policyd door: a Postfix SMTP access policy delegation server (check_policy_service inet:HOST:PORT or
 * unix:PATH). See policy-session.ts for how requests map to rule stages and policy-action.ts for the answers.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { DEFER_ACCEPT_SECONDS, deferAccept } from '../core/defer-accept.js';
import type { Door, DoorDeps } from '../daemon/door.js';
import { allowList, boundAddress, closeAndDrain, isAllowed, listenOn, LOOPBACK_ONLY, type DoorListen } from './door-listener.js';
import { DEFAULT_POLICY_CODEC_LIMITS, type PolicyCodecLimits } from './policy-codec.js';
import type { AcceptAction } from './policy-action.js';
import { PolicyConnection } from './policy-server.js';
import { PolicySession } from './policy-session.js';

export type PolicyListen = DoorListen;

export interface PolicyDoorOptions {
  readonly listen: PolicyListen;
  /** TCP clients allowed to connect ("127.0.0.0/8", "::1"); default loopback only. Unix sockets: file mode 0660. */
  readonly allowFrom?: readonly string[];
  /** What an explicit accept verdict answers: 'dunno' (default, safe) or 'ok' (skips later restrictions). */
  readonly acceptAction?: AcceptAction;
  /** Largest request in bytes (default 64 KiB). */
  readonly maxRequest?: number;
  readonly maxAttributes?: number;
  /** Default 330 s: longer than Postfix's smtpd_policy_service_max_idle (300 s), so Postfix closes first. */
  readonly idleTimeoutMs?: number;
  /** Default 100 s, like Postfix's smtpd_policy_service_timeout. */
  readonly requestTimeoutMs?: number;
  /** Most connections at once (Postfix opens one per smtpd process); default deps.limits.sessions. */
  readonly maxConnections?: number;
}

export function createPolicyDoor(options: PolicyDoorOptions, initialDeps: DoorDeps): Door {
  let deps = initialDeps;
  const limits: PolicyCodecLimits = {
    ...DEFAULT_POLICY_CODEC_LIMITS,
    ...(options.maxRequest !== undefined ? { maxRequestBytes: options.maxRequest } : {}),
    ...(options.maxAttributes !== undefined ? { maxAttributes: options.maxAttributes } : {}),
  };
  const allow = allowList(options.allowFrom ?? LOOPBACK_ONLY, 'policy');
  const connections = new Set<PolicyConnection>();
  const addresses: string[] = [];
  let server: Server | undefined;
  let counter = 0;
  const log = () => deps.logger.child({ door: 'policy' });

  const onConnection = (socket: Socket): void => {
    const id = `p${(++counter).toString(36)}`;
    const clog = log().child({ conn: id });
    if (options.listen.kind === 'tcp' && !isAllowed(allow, socket.remoteAddress)) {
      clog.warn({ peer: socket.remoteAddress }, 'policy connection from a client not in allowFrom; closed');
      socket.destroy();
      return;
    }
    const session = new PolicySession(
      () => ({ policy: deps.policy, effects: deps.effects, logger: deps.logger.child({ door: 'policy', conn: id }) }),
      options.acceptAction ?? 'dunno',
    );
    const conn = new PolicyConnection(
      socket,
      session,
      {
        limits,
        idleTimeoutMs: options.idleTimeoutMs ?? 330_000,
        requestTimeoutMs: options.requestTimeoutMs ?? 100_000,
        maxQueued: 16,
      },
      clog,
    );
    connections.add(conn);
    void conn.done.then(() => connections.delete(conn));
  };

  return {
    name: 'policy',
    get addresses() {
      return addresses;
    },
    get activeSessions() {
      return connections.size;
    },
    update(next: DoorDeps) {
      // Requests of a message already under way keep the deps they started with (PolicySession reads these
      // afresh for each new message).
      deps = next;
    },
    async start() {
      const srv = createServer({ pauseOnConnect: false }, onConnection);
      srv.maxConnections = options.maxConnections ?? deps.limits.sessions;
      const listen = options.listen;
      if (listen.kind === 'unix' && existsSync(listen.path) && lstatSync(listen.path).isSocket()) unlinkSync(listen.path);
      await listenOn(srv, listen);
      srv.on('error', (err) => log().error({ err: err.message }, 'policy listener error'));
      if (listen.kind === 'unix') chmodSync(listen.path, 0o660);
      else {
        // Postfix writes its request at once; a client that connects and says nothing never takes a connection slot.
        const notDeferred = deferAccept(srv, DEFER_ACCEPT_SECONDS);
        if (notDeferred !== undefined) log().debug({ reason: notDeferred }, 'policy listener without TCP_DEFER_ACCEPT');
      }
      addresses.push(boundAddress(srv, listen));
      server = srv;
      log().info({ addresses }, 'policy door listening');
      const needs = deps.policy.needs;
      if (needs.headers || needs.scan || needs.stages.has('header') || needs.stages.has('eoh')) {
        // The policy protocol carries neither headers nor content: say so once instead of silently never matching.
        log().info({ headers: needs.headers, scan: needs.scan }, 'rules read headers or scanner results, which the policy door cannot see; those rules never fire here (use the milter or filter door)');
      }
    },
    async stop(drainMs: number) {
      const srv = server;
      server = undefined;
      await closeAndDrain(srv, connections, drainMs);
      addresses.length = 0;
    },
  };
}
