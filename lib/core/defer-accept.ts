/**
 * TCP_DEFER_ACCEPT for listeners whose clients speak first (the milter door: the MTA opens with SMFIC_OPTNEG; the
 * policy door: Postfix sends its request).
 * The kernel hands a connection to accept() only once its first bytes are there, so accepting it and reading its
 * first packet take one wake-up of the event loop instead of two; a client that connects and says nothing never
 * reaches the door at all. Needs sluice's native addon; without it the listener works as before.
 */
import type { Server } from 'node:net';
import { loadNativeAddon } from './native-addon.js';
import { socketFd } from './socket-fd.js';

/**
 * How long the kernel holds a new connection that has sent nothing yet. The MTA writes at once (OPTNEG, a policy
 * request), so only a silent client waits, and it never takes a session slot; the kernel then drops it.
 */
export const DEFER_ACCEPT_SECONDS = 5;

type DeferAccept = (fd: number, seconds: number) => string | 0;

/** Sets TCP_DEFER_ACCEPT on a listening TCP server. Returns undefined when set, or why not. */
export function deferAccept(server: Server, seconds: number): string | undefined {
  const native = loadNativeAddon() as { deferAccept?: unknown } | undefined;
  if (typeof native?.deferAccept !== 'function') return 'native addon not built';
  const fd = socketFd(server);
  if (fd === undefined) return 'listener has no file descriptor';
  const r = (native.deferAccept as DeferAccept)(fd, seconds);
  return r === 0 ? undefined : r;
}
