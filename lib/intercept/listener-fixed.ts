import type { ListenerMode } from './listener-mode.js';
import { normalizeIp } from './address-util.js';

/** fixed: every connection goes to the configured upstream. */
export function fixedMode(upstream: { ip: string; port: number } | undefined): ListenerMode {
  return {
    source: 'fixed',
    check(opts) {
      if (!opts.upstream) throw new Error('listener mode "fixed" needs an upstream address');
    },
    resolve(_socket, ctx) {
      const destination = { ip: normalizeIp(upstream?.ip ?? ''), port: upstream?.port ?? 0 };
      return Promise.resolve({ ok: true, client: ctx.peer, destination, head: Buffer.alloc(0) });
    },
  };
}
