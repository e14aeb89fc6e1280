import * as net from 'node:net';
import type { Endpoint } from '../core/stage.js';
import { formatEndpoint, ipFamily, normalizeIp } from './address-util.js';
import { requireNative } from './native-sockopt.js';

export interface UpstreamConnectOptions {
  /** Full transparency: bind the upstream socket to this (client) address with IP_TRANSPARENT; port 0 = ephemeral. */
  readonly transparentSource?: Endpoint;
  readonly timeoutMs: number;
}

/** A connect failure; `code` is the errno name (ECONNREFUSED, ETIMEDOUT, EADDRINUSE, EPERM...). */
export class UpstreamConnectError extends Error {
  override readonly name = 'UpstreamConnectError';
  constructor(
    readonly code: string,
    readonly destination: Endpoint,
    message: string,
  ) {
    super(message);
  }
}

/** Connects to the upstream MTA; resolves once the TCP handshake is complete. */
export async function connectUpstream(dest: Endpoint, opts: UpstreamConnectOptions): Promise<net.Socket> {
  const d: Endpoint = { ip: normalizeIp(dest.ip), port: dest.port };
  if (opts.transparentSource) return await connectTransparent(d, { ip: normalizeIp(opts.transparentSource.ip), port: opts.transparentSource.port }, opts.timeoutMs);
  return await new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host: d.ip, port: d.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamConnectError('ETIMEDOUT', d, `connect to ${formatEndpoint(d)} timed out after ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new UpstreamConnectError(err.code ?? 'EIO', d, `connect to ${formatEndpoint(d)} failed: ${err.code ?? err.message}`));
    };
    socket.once('error', onError);
  });
}

async function connectTransparent(d: Endpoint, src: Endpoint, timeoutMs: number): Promise<net.Socket> {
  const native = requireNative('full transparency (transparent upstream connect)');
  const srcFam = ipFamily(src.ip);
  const dstFam = ipFamily(d.ip);
  if (srcFam !== dstFam) {
    throw new UpstreamConnectError('EAFNOSUPPORT', d, `cannot bind an IPv${srcFam} client address for an IPv${dstFam} destination`);
  }
  let fd: number;
  try {
    fd = native.connectTransparent(src.ip, src.port, d.ip, d.port, dstFam);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UpstreamConnectError(e.code ?? 'EIO', d, `transparent connect to ${formatEndpoint(d)} from ${formatEndpoint(src)} failed: ${e.message}`);
  }
  // The connect runs in the kernel; a pool thread polls for writability (bounded by timeoutMs) and reads SO_ERROR.
  const code = await new Promise<string | 0>((resolve) => native.waitConnected(fd, timeoutMs, resolve));
  if (code !== 0) {
    native.closeFd(fd);
    const why = code === 'ETIMEDOUT' ? `timed out after ${timeoutMs} ms` : `failed: ${code}`;
    throw new UpstreamConnectError(code, d, `transparent connect to ${formatEndpoint(d)} from ${formatEndpoint(src)} ${why}`);
  }
  const socket = new net.Socket({ fd, readable: true, writable: true });
  socket.setNoDelay(true);
  return socket;
}
