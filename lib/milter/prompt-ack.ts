/**
 * Prompt ACKs on a TCP connection from Postfix.
 *
 * Postfix writes milter events it expects no answer to into its buffer and flushes it when it next waits for an
 * answer, and once more when smtpd hands the milter connection to cleanup after DATA. It does not set TCP_NODELAY,
 * so when two flushes follow each other with no answer from us in between, Nagle holds the second until our ACK of
 * the first, and Linux delays that ACK by up to 40 ms (a connection that answers quickly is in its "interactive"
 * delayed-ACK mode). setsockopt(TCP_QUICKACK) sends that pending ACK at once; the milter session calls it after
 * each read it does not answer, so nothing Postfix writes waits on us. That lets a TCP milter skip DATA (NODATA)
 * like a unix-socket one (milter-negotiate.ts). It needs sluice's native addon; without it, or on a unix socket
 * (no ACKs), there is nothing to do.
 */
import type { Socket } from 'node:net';
import { loadNativeAddon } from '../core/native-addon.js';
import { socketFd } from '../core/socket-fd.js';

type QuickAck = (fd: number) => string | 0;

function quickAckFunction(): QuickAck | undefined {
  const native = loadNativeAddon() as { quickAck?: unknown } | undefined;
  return typeof native?.quickAck === 'function' ? (native.quickAck as QuickAck) : undefined;
}

/** True when TCP connections get prompt ACKs (the native addon is built and has quickAck). */
export function promptAcksAvailable(): boolean {
  return quickAckFunction() !== undefined;
}

/** For a TCP socket: a function that ACKs what has been read so far, now. Undefined without the addon. */
export function promptAcker(socket: Socket): (() => void) | undefined {
  const quickAck = quickAckFunction();
  if (quickAck === undefined) return undefined;
  return () => {
    const fd = socketFd(socket);
    // A failure (the socket is closing) changes nothing: the ACK then goes out as it would have anyway.
    if (fd !== undefined) quickAck(fd);
  };
}
