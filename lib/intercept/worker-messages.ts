/**
 * What the daemon and an intercept worker process say to each other over the IPC channel (child_process.fork).
 * A session travels as a `session` message with the client socket as its handle; everything the worker needs to
 * run it as if it had accepted the connection itself is in the message.
 */
import type { DestinationSource, Endpoint } from '../core/stage.js';

/** Daemon → worker. */
export type ToWorker =
  | {
      readonly t: 'session';
      /** The daemon's number for this session; the worker reports it back when the session closes. */
      readonly token: number;
      readonly client: Endpoint;
      readonly destination: Endpoint;
      readonly source: DestinationSource;
      /** Client bytes the daemon read before the hand-off (PROXY header leftovers, early talk), base64. */
      readonly head: string;
      readonly transparentSource?: Endpoint;
      /** Sessions open at the daemon, this one included: for this client and in total (rules read them). */
      readonly sessions: { readonly client: number; readonly total: number };
    }
  /** SIGHUP reached the daemon and its new configuration is in force: load it too. */
  | { readonly t: 'reload' }
  /** Stop: let sessions finish for drainMs, close the rest, exit. */
  | { readonly t: 'stop'; readonly drainMs: number };

/** Worker → daemon. */
export type FromWorker =
  | { readonly t: 'ready' }
  | { readonly t: 'closed'; readonly token: number }
  | { readonly t: 'reloaded'; readonly ok: boolean }
  /** The worker could not start (bad configuration, listener gone): the daemon logs it and does not respawn. */
  | { readonly t: 'failed'; readonly error: string };

export function isFromWorker(m: unknown): m is FromWorker {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { t?: unknown }).t;
  return t === 'ready' || t === 'closed' || t === 'reloaded' || t === 'failed';
}

export function isToWorker(m: unknown): m is ToWorker {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { t?: unknown }).t;
  return t === 'session' || t === 'reload' || t === 'stop';
}
