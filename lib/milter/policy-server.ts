/**
 * Serves the policy delegation protocol on one accepted connection: decode requests (bounded), answer them one
 * after the other on the same connection for as long as Postfix keeps it (it reuses one connection per smtpd
 * process across many SMTP sessions), close on idle timeout, on a request that takes too long to arrive, or on a
 * broken request. On any trouble the connection is closed WITHOUT an answer: Postfix then retries and finally
 * applies its smtpd_policy_service_default_action (451 4.3.5 unless configured).
 */
import type { Socket } from 'node:net';
import { ProtocolError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { encodePolicyResponse, PolicyRequestDecoder, type PolicyAttributes, type PolicyCodecLimits } from './policy-codec.js';
import type { PolicySession } from './policy-session.js';

export interface PolicyConnectionOptions {
  readonly limits: PolicyCodecLimits;
  /** Close a connection with no request in progress after this long (Postfix's own max_idle is 300 s). */
  readonly idleTimeoutMs: number;
  /** A request must arrive completely within this long after its first byte. */
  readonly requestTimeoutMs: number;
  /** Requests a client may send ahead of the answers (Postfix sends one at a time). */
  readonly maxQueued: number;
}

export class PolicyConnection {
  private readonly decoder: PolicyRequestDecoder;
  private readonly queue: PolicyAttributes[] = [];
  private busy = false;
  private closing = false;
  private requestTimer: NodeJS.Timeout | undefined;
  /** Requests answered on this connection. */
  answered = 0;
  readonly done: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly session: PolicySession,
    private readonly options: PolicyConnectionOptions,
    private readonly log: Logger,
  ) {
    this.decoder = new PolicyRequestDecoder(options.limits);
    this.done = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.setNoDelay(true);
    socket.setTimeout(options.idleTimeoutMs, () => {
      this.log.debug({ answered: this.answered }, 'policy connection idle; closing');
      socket.destroy();
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'policy connection error'));
    socket.once('close', () => {
      if (this.requestTimer) clearTimeout(this.requestTimer);
    });
  }

  /** True while a request is being evaluated or waits to be. */
  get inFlight(): boolean {
    return this.busy || this.queue.length > 0;
  }

  /** Finish what is in flight, then close; close at once when idle. */
  drain(): void {
    this.closing = true;
    if (!this.inFlight) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let requests: PolicyAttributes[];
    try {
      requests = this.decoder.push(chunk);
    } catch (err) {
      if (err instanceof ProtocolError) this.log.warn({ reason: err.message }, 'bad policy request; closing without an answer');
      else this.log.error({ err: (err as Error).message }, 'policy decoder failed');
      this.socket.destroy();
      return;
    }
    if (this.decoder.buffered > 0) {
      this.requestTimer ??= setTimeout(() => {
        this.log.warn({ buffered: this.decoder.buffered }, 'policy request incomplete after the request timeout; closing');
        this.socket.destroy();
      }, this.options.requestTimeoutMs);
    } else if (this.requestTimer) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    if (requests.length === 0) return;
    if (this.queue.length + requests.length > this.options.maxQueued) {
      this.log.warn({ queued: this.queue.length + requests.length }, 'too many policy requests sent ahead of the answers; closing');
      this.socket.destroy();
      return;
    }
    this.queue.push(...requests);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.socket.destroyed) {
        const req = this.queue.shift()!;
        let action: string;
        try {
          action = req.size === 0 ? 'DUNNO' : (await this.session.handle(req)).action;
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'policy evaluation failed; closing without an answer');
          this.socket.destroy();
          return;
        }
        if (this.socket.destroyed) return;
        this.socket.write(encodePolicyResponse(action));
        this.answered++;
      }
    } finally {
      this.busy = false;
    }
    if (this.closing && !this.socket.destroyed) this.socket.end();
  }
}
