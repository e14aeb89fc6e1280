import type * as net from 'node:net';
import type { ListenerMode } from './listener-mode.js';
import { ipFamily } from './address-util.js';
import { requireNative } from './native-sockopt.js';

/**
 * tproxy: the listening socket has IP_TRANSPARENT, the kernel's TPROXY target diverts connections for any address
 * to it, and the accepted socket's local address IS the original destination (no NAT, no conntrack lookup).
 */
export function tproxyMode(): ListenerMode {
  return {
    source: 'tproxy',
    check() {
      requireNative('listener mode "tproxy"');
    },
    async bind(server: net.Server, opts) {
      const native = requireNative('listener mode "tproxy"');
      const ip = opts.listen.ip === '' ? '::' : opts.listen.ip;
      const fd = native.createTransparentListener(ip, opts.listen.port, ipFamily(ip), opts.backlog ?? 511);
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => {
          native.closeFd(fd);
          reject(err);
        };
        server.once('error', onError);
        server.listen({ fd }, () => {
          server.off('error', onError);
          resolve();
        });
      });
    },
    resolve(_socket, ctx) {
      return Promise.resolve({ ok: true, client: ctx.peer, destination: ctx.local, head: Buffer.alloc(0) });
    },
  };
}
