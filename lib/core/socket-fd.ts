/** The file descriptor libuv uses for a net.Socket (Linux), or undefined once it has none. */
export function socketFd(socket: object): number | undefined {
  const handle = (socket as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' && handle.fd >= 0 ? handle.fd : undefined;
}
