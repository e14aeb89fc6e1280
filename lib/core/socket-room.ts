/**
 * Waiting for room in a socket's write buffer without waiting for ever: a write that returned false is followed
 * by 'drain' or, if the peer goes away, by 'close' only. Every writer that waits for room uses this.
 */
import type { Socket } from 'node:net';

/**
 * Resolves 'drained' when the socket takes more bytes, 'closed' when it closed first, 'timeout' when it took
 * nothing for `timeoutMs` (0 or absent: no time limit; the caller's own timers bound the wait).
 */
export function waitForRoom(socket: Socket, timeoutMs = 0): Promise<'drained' | 'closed' | 'timeout'> {
  if (socket.destroyed) return Promise.resolve('closed');
  return new Promise((resolve) => {
    const done = (how: 'drained' | 'closed' | 'timeout'): void => {
      if (timer) clearTimeout(timer);
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      resolve(how);
    };
    const onDrain = (): void => done('drained');
    const onClose = (): void => done('closed');
    const timer = timeoutMs > 0 ? setTimeout(() => done('timeout'), timeoutMs) : undefined;
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}
