import type { ListenerMode } from './listener-mode.js';
import { ipFamily, normalizeIp } from './address-util.js';
import { requireNative } from './native-sockopt.js';
import { socketFd } from '../core/socket-fd.js';

/**
 * redirect: iptables/nftables REDIRECT or DNAT sent the connection here; conntrack remembers the original
 * destination, read with SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6).
 */
export function redirectMode(): ListenerMode {
  return {
    source: 'redirect',
    check() {
      requireNative('listener mode "redirect"');
    },
    resolve(socket, ctx) {
      const native = requireNative('listener mode "redirect"');
      const fd = socketFd(socket);
      if (fd === undefined) return Promise.resolve({ ok: false, reason: 'closed', detail: 'socket has no descriptor' });
      // An IPv4 client on a dual-stack socket shows a mapped local address; the kernel looks the socket up
      // by its own family, so try the socket's family first and the other one second.
      const raw = socket.localAddress ?? '';
      const sockFamily: 4 | 6 = ipFamily(raw);
      const families: (4 | 6)[] = sockFamily === 6 && normalizeIp(raw) !== raw.toLowerCase() ? [4, 6] : [sockFamily];
      let lastErr = '';
      for (const fam of families) {
        try {
          const d = native.getOriginalDestination(fd, fam);
          return Promise.resolve({ ok: true, client: ctx.peer, destination: { ip: normalizeIp(d.ip), port: d.port }, head: Buffer.alloc(0) });
        } catch (err) {
          lastErr = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        }
      }
      return Promise.resolve({ ok: false, reason: 'no-destination', detail: `SO_ORIGINAL_DST failed: ${lastErr}` });
    },
  };
}
