import type * as net from 'node:net';
import type { DestinationSource, Endpoint } from '../core/stage.js';
import type { ListenerOptions, RefusalReason } from './listener.js';
import type { ProxyHeader } from './proxy-protocol.js';

/** What a mode found out about one accepted socket. */
export type ModeResult =
  | {
      readonly ok: true;
      readonly client: Endpoint;
      readonly destination: Endpoint;
      readonly head: Buffer;
      readonly proxy?: ProxyHeader;
    }
  | { readonly ok: false; readonly reason: RefusalReason; readonly detail: string; readonly client?: Endpoint; readonly destination?: Endpoint };

export interface AcceptContext {
  /** TCP peer of the socket, normalised. */
  readonly peer: Endpoint;
  /** Local address of the socket, normalised. */
  readonly local: Endpoint;
}

/** One way of finding the destination: fixed, tproxy, redirect, proxy. */
export interface ListenerMode {
  readonly source: DestinationSource;
  /** Throws on bad options or a missing native helper, before anything is bound. */
  check(opts: ListenerOptions): void;
  /** Binds `server`; the default (undefined) is a plain listen on opts.listen. */
  bind?(server: net.Server, opts: ListenerOptions): Promise<void>;
  resolve(socket: net.Socket, ctx: AcceptContext): Promise<ModeResult>;
}
