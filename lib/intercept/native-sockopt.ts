/**
 * Loader for the native socket-option helper (native/src/sluice_sockopt.c, built with node-gyp).
 * Modes that need it (tproxy, redirect, full transparency) call `requireNative()` at start and fail with a clear
 * message if it is missing; fixed and proxy modes never load it.
 */
import { loadNativeAddon, nativeAddonError } from '../core/native-addon.js';

export interface NativeSockopt {
  /** SO_ORIGINAL_DST (family 4) or IP6T_SO_ORIGINAL_DST (family 6) of an accepted socket. Throws with `code` = errno name. */
  getOriginalDestination(fd: number, family: 4 | 6): { ip: string; port: number };
  /** A listening socket with IP_TRANSPARENT/IPV6_TRANSPARENT and SO_REUSEADDR (non-blocking, close-on-exec). */
  createTransparentListener(ip: string, port: number, family: 4 | 6, backlog: number): number;
  /**
   * A non-blocking socket with IP_TRANSPARENT bound to srcIp:srcPort (0 = ephemeral) whose connect to dstIp:dstPort
   * is in progress (EINPROGRESS) or done. Wait for writability, then call `socketError(fd)`.
   */
  connectTransparent(srcIp: string, srcPort: number, dstIp: string, dstPort: number, family: 4 | 6): number;
  /** getsockopt(SO_ERROR): 0 or an errno name ("ECONNREFUSED"). */
  socketError(fd: number): string | 0;
  /** Waits (on the libuv thread pool) until fd is writable or timeoutMs passes; resolves SO_ERROR ('ETIMEDOUT' on timeout). */
  waitConnected(fd: number, timeoutMs: number, callback: (err: string | 0) => void): void;
  /** setsockopt(TCP_QUICKACK, 1): send a pending ACK now (lib/milter/prompt-ack.ts). 0 or an errno name. */
  quickAck(fd: number): string | 0;
  /** close(2), for a descriptor never handed to a net.Socket. */
  closeFd(fd: number): void;
  /** prctl(PR_SET_KEEPCAPS) for the calling (main) thread. */
  keepCapabilities(on: boolean): void;
  /** After setuid: permitted and effective capabilities become exactly CAP_NET_ADMIN + CAP_NET_RAW. */
  retainNetAdmin(): void;
}

/** The helper, when the addon is built and loads. */
export function loadNative(): NativeSockopt | undefined {
  return loadNativeAddon() as NativeSockopt | undefined;
}

/** The helper, or an Error naming what needs it and how to build it. */
export function requireNative(what: string): NativeSockopt {
  const n = loadNative();
  if (n) return n;
  throw new Error(`${what} needs the native socket helper: ${nativeAddonError() ?? 'not available'}`);
}

/**
 * Runs `drop` (the daemon's setgid/setuid) so that the main thread keeps CAP_NET_ADMIN and CAP_NET_RAW, and
 * nothing else, afterwards: what tproxy listeners and transparent upstream connects need after a privilege drop
 * (smtp-gated keeps a saved root uid, proxsmtp keeps CAP_NET_ADMIN with libcap). Transparent sockets are created
 * on the main thread, so the per-thread capability set is enough.
 */
export function dropPrivilegesKeepingNetAdmin(drop: () => void): void {
  const native = requireNative('keeping CAP_NET_ADMIN across the privilege drop');
  native.keepCapabilities(true);
  try {
    drop();
  } finally {
    native.keepCapabilities(false);
  }
  native.retainNetAdmin();
}
