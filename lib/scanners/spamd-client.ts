/**
 * A spamd client (SPAMC/1.5). spamd needs Content-length before the body, so the caller hands in a complete,
 * bounded message (see MessageSpool); the client streams it from memory or from its private spill file.
 */
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { connectOptions, parseScannerAddress, type ScannerAddress } from './scanner-address.js';
import { SPAMD_STATUS, parseSpamHeader, parseSpamdResponse, parseSymbols, requestHead, type SpamdMethod } from './spamd-protocol.js';

export interface SpamdClientOptions {
  /** "host:port" (spamd's default port is 783) or a Unix socket path. */
  readonly address: string | ScannerAddress;
  /** The whole exchange (connect, send, answer) must finish within this. */
  readonly timeoutMs: number;
  /** CHECK (score only), SYMBOLS (score and rule names; the default) or REPORT. */
  readonly method?: SpamdMethod;
  /** Sent as the User header (spamd's per-user preferences). */
  readonly user?: string;
  /** Largest answer read (REPORT bodies can be long). */
  readonly maxReplyBytes?: number;
}

export type SpamdResult =
  | { readonly kind: 'scored'; readonly isSpam: boolean; readonly score: number; readonly threshold: number; readonly symbols: readonly string[]; readonly report?: string }
  | { readonly kind: 'error'; readonly message: string };

export class SpamdClient {
  readonly address: ScannerAddress;
  readonly method: SpamdMethod;

  constructor(private readonly options: SpamdClientOptions) {
    this.address = typeof options.address === 'string' ? parseScannerAddress(options.address) : options.address;
    this.method = options.method ?? 'SYMBOLS';
    if (!(options.timeoutMs > 0)) throw new RangeError('spamd timeoutMs must be positive');
  }

  /** PING → true on "SPAMD/x 0 PONG". Never rejects. */
  async ping(): Promise<boolean> {
    const raw = await this.exchange(requestHead('PING', undefined), undefined);
    if (typeof raw !== 'string') return false;
    const r = parseSpamdResponse(raw);
    return r !== undefined && r.status === 0 && /PONG/.test(r.message);
  }

  /** Scores a message of exactly `length` bytes. Never rejects. */
  async check(body: Buffer | Readable, length: number): Promise<SpamdResult> {
    const raw = await this.exchange(requestHead(this.method, length, this.options.user), body);
    if (typeof raw !== 'string') return { kind: 'error', message: raw.error };
    const r = parseSpamdResponse(raw);
    if (!r) return { kind: 'error', message: `malformed spamd answer: ${JSON.stringify(raw.slice(0, 80))}` };
    if (r.status !== SPAMD_STATUS.EX_OK) return { kind: 'error', message: `spamd status ${r.status} ${r.message.slice(0, 100)}` };
    const spam = parseSpamHeader(r.headers.get('spam') ?? '');
    if (!spam) return { kind: 'error', message: 'spamd answer without a valid Spam header' };
    const symbols = this.method === 'SYMBOLS' ? parseSymbols(r.body) : [];
    return { kind: 'scored', ...spam, symbols, ...(this.method === 'REPORT' ? { report: r.body } : {}) };
  }

  private async exchange(head: string, body: Buffer | Readable | undefined): Promise<string | { error: string }> {
    const max = this.options.maxReplyBytes ?? 256 * 1024;
    return await new Promise((resolve) => {
      let done = false;
      const parts: Buffer[] = [];
      let got = 0;
      const sock: Socket = connect(connectOptions(this.address));
      const finish = (v: string | { error: string }): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (body && !Buffer.isBuffer(body)) body.destroy();
        sock.destroy();
        resolve(v);
      };
      const timer = setTimeout(() => finish({ error: `spamd timeout after ${this.options.timeoutMs} ms` }), this.options.timeoutMs);
      sock.on('error', (err: NodeJS.ErrnoException) => finish({ error: `spamd connection error: ${err.code ?? err.message}` }));
      sock.on('data', (d: Buffer) => {
        got += d.length;
        if (got > max) return finish({ error: 'spamd answer too long' });
        parts.push(d);
      });
      sock.on('end', () => finish(Buffer.concat(parts).toString('latin1')));
      sock.on('close', () => finish(parts.length ? Buffer.concat(parts).toString('latin1') : { error: 'spamd closed the connection without an answer' }));
      sock.on('connect', () => {
        sock.write(head, 'latin1');
        if (body === undefined) return;
        if (Buffer.isBuffer(body)) {
          sock.write(body);
          sock.end();
          return;
        }
        body.on('error', (err) => finish({ error: `reading the spooled message failed: ${err.message}` }));
        body.pipe(sock, { end: true });
      });
    });
  }
}
