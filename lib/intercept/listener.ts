import type { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import type { Logger } from '../core/logger.js';
import type { DestinationSource, Endpoint } from '../core/stage.js';
import type { ProxyHeader } from './proxy-protocol.js';
import { createListenerServer } from './listener-server.js';

/** How the original destination of an intercepted connection is found. */
export type DestinationMode = 'fixed' | 'tproxy' | 'redirect' | 'proxy';
export const DESTINATION_MODES: readonly DestinationMode[] = ['fixed', 'tproxy', 'redirect', 'proxy'];

export interface ListenerOptions {
  /** Where to listen; ip may be '::' (dual stack) or '0.0.0.0'. */
  readonly listen: Endpoint;
  readonly mode: DestinationMode;
  /** fixed: the upstream every connection goes to. proxy: if set, used instead of the PROXY header's destination. */
  readonly upstream?: Endpoint;
  /** proxy: CIDRs allowed to send PROXY headers (default: loopback only). */
  readonly proxyTrusted?: readonly string[];
  /** proxy: how long to wait for a complete PROXY header (default 5000 ms, like Postfix). */
  readonly proxyHeaderTimeoutMs?: number;
  /** proxy: accept v1, v2 or both (default both). */
  readonly proxyVersions?: readonly (1 | 2)[];
  /** Bind the upstream socket to the client's address (IP_TRANSPARENT); the door passes it to connectUpstream. */
  readonly transparent?: boolean;
  /** With `transparent`: also bind the client's source port (smtp-gated tproxy) instead of an ephemeral one. */
  readonly bindClientPort?: boolean;
  readonly backlog?: number;
  /** Most accepted connections still waiting for their destination (PROXY headers in flight); more are refused 'busy'. Default 1000. */
  readonly maxPending?: number;
}

/** A connection whose client and original destination are known. */
export interface AcceptedConnection {
  /**
   * The client socket, not yet flowing (nothing is lost): process `head` first, then attach a 'data' listener or
   * pipe it. The listener's own error handler is removed at hand-off, so attach an 'error' handler at once.
   */
  readonly socket: net.Socket;
  /** The real client (from the PROXY header in proxy mode), IPv4-mapped IPv6 normalised to IPv4. */
  readonly client: Endpoint;
  /** Where the client meant to connect (or the fixed upstream). */
  readonly destination: Endpoint;
  readonly source: DestinationSource;
  /** Client bytes already read after a PROXY header (empty in other modes). */
  readonly head: Buffer;
  /** The address of the socket we accepted on (after normalisation). */
  readonly local: Endpoint;
  /** The TCP peer of the socket (the proxy in proxy mode, else the client). */
  readonly peer: Endpoint;
  /** proxy mode: the parsed header. */
  readonly proxy?: ProxyHeader;
  /** Where connectUpstream should bind the upstream socket (set when `transparent` is on). */
  readonly transparentSource?: Endpoint;
}

export type RefusalReason =
  /** The destination is one of our own listeners, or the client itself. */
  | 'loop'
  /** A PROXY header from a source not in proxyTrusted. */
  | 'proxy-untrusted'
  /** A PROXY header that breaks protocols.md §4. */
  | 'proxy-invalid'
  /** PROXY UNKNOWN / v2 UNSPEC: no client address to act on (Postfix also refuses it). */
  | 'proxy-unsupported'
  /** No complete PROXY header within proxyHeaderTimeoutMs. */
  | 'proxy-timeout'
  /** Too many connections still waiting for a PROXY header (maxPending). */
  | 'busy'
  /** The client closed before the destination was known. */
  | 'closed'
  /** The kernel could not tell us the destination (no conntrack entry, native helper error). */
  | 'no-destination';

export interface RefusedConnection {
  readonly client: Endpoint;
  readonly reason: RefusalReason;
  /** Human-readable detail for logs (never contains client bytes). */
  readonly detail: string;
  readonly destination?: Endpoint;
  /**
   * Only for reason 'loop' (the client is a real SMTP client): call synchronously inside the 'refused' handler to
   * write final bytes (e.g. "554 5.4.6 ...\r\n") before the socket is closed. Otherwise it is destroyed silently.
   */
  readonly end?: (finalBytes: string | Buffer) => void;
}

export interface InterceptListener extends EventEmitter {
  listen(): Promise<void>;
  /** Stops accepting (sessions already handed out are the door's business). */
  close(): Promise<void>;
  /** "ip:port" once listening ("[::]:25" for IPv6). */
  readonly address: string;
  readonly endpoint: Endpoint | undefined;
  on(event: 'connection', fn: (c: AcceptedConnection) => void): this;
  on(event: 'refused', fn: (r: RefusedConnection) => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
}

export function createInterceptListener(opts: ListenerOptions, logger: Logger): InterceptListener {
  return createListenerServer(opts, logger);
}
