import type * as net from 'node:net';
import type { Endpoint } from '../core/stage.js';
import type { ListenerOptions } from './listener.js';
import type { AcceptContext, ListenerMode, ModeResult } from './listener-mode.js';
import { cidrContains, parseCidr, type Cidr } from './address-util.js';
import { parseProxyHeader, PP1_MAX_LENGTH, PP2_DEFAULT_MAX_LENGTH } from './proxy-protocol.js';

export const DEFAULT_PROXY_TRUSTED: readonly string[] = ['127.0.0.0/8', '::1/128'];
export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 5000;

/**
 * proxy: a trusted proxy (HAProxy send-proxy / send-proxy-v2) sends a PROXY header before anything else.
 * We never speak first, never auto-detect, and refuse untrusted senders, bad headers, UNKNOWN/UNSPEC, and
 * headers that do not arrive in time.
 */
export function proxyMode(opts: ListenerOptions): ListenerMode {
  const trustedText = opts.proxyTrusted ?? DEFAULT_PROXY_TRUSTED;
  const trusted: Cidr[] = [];
  const timeoutMs = opts.proxyHeaderTimeoutMs ?? DEFAULT_PROXY_HEADER_TIMEOUT_MS;
  const versions = opts.proxyVersions ?? [1, 2];
  return {
    source: 'proxy',
    check() {
      for (const t of trustedText) {
        const c = parseCidr(t);
        if (!c) throw new Error(`proxyTrusted: not an address or CIDR: ${JSON.stringify(t)}`);
        trusted.push(c);
      }
      if (!(timeoutMs > 0)) throw new Error('proxyHeaderTimeoutMs must be > 0');
    },
    async resolve(socket, ctx) {
      if (!trusted.some((c) => cidrContains(c, ctx.peer.ip))) {
        return { ok: false, reason: 'proxy-untrusted', detail: 'PROXY sender not in proxyTrusted', client: ctx.peer };
      }
      return await readHeader(socket, ctx, { timeoutMs, versions, upstream: opts.upstream });
    },
  };
}

function readHeader(
  socket: net.Socket,
  ctx: AcceptContext,
  o: { timeoutMs: number; versions: readonly (1 | 2)[]; upstream: Endpoint | undefined },
): Promise<ModeResult> {
  const cap = Math.max(PP1_MAX_LENGTH, PP2_DEFAULT_MAX_LENGTH);
  return new Promise<ModeResult>((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (r: ModeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ ok: false, reason: 'proxy-timeout', detail: `no complete PROXY header within ${o.timeoutMs} ms`, client: ctx.peer }),
      o.timeoutMs,
    );
    const onEnd = (): void => finish({ ok: false, reason: 'closed', detail: 'closed before a complete PROXY header', client: ctx.peer });
    const onReadable = (): void => {
      for (;;) {
        if (done) return;
        // Read at most what may still belong to the header, so we never hold more than `cap` bytes;
        // anything beyond stays in the socket for the session.
        const avail = socket.readableLength;
        const chunk = (avail > 0 ? socket.read(Math.min(avail, cap - buf.length)) : socket.read()) as Buffer | null;
        if (chunk === null) return;
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const r = parseProxyHeader(buf, { versions: o.versions, maxV2Length: PP2_DEFAULT_MAX_LENGTH });
        if (r.kind === 'incomplete') {
          if (buf.length >= cap) finish({ ok: false, reason: 'proxy-invalid', detail: 'PROXY header too long', client: ctx.peer });
          continue;
        }
        if (r.kind === 'error') {
          finish({ ok: false, reason: 'proxy-invalid', detail: r.error.message, client: ctx.peer });
          return;
        }
        const h = r.header;
        const head = Buffer.from(buf.subarray(r.length));
        if (h.command === 'local') {
          const destination = o.upstream ?? ctx.local;
          finish({ ok: true, client: ctx.peer, destination, head, proxy: h });
          return;
        }
        if ((h.family !== 'tcp4' && h.family !== 'tcp6') || !h.source || !h.destination) {
          finish({ ok: false, reason: 'proxy-unsupported', detail: `PROXY family ${h.family} carries no TCP client address`, client: ctx.peer });
          return;
        }
        finish({ ok: true, client: h.source, destination: o.upstream ?? h.destination, head, proxy: h });
        return;
      }
    };
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}
