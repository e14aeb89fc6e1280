/**
 * The filter door's SMTP client towards the next hop (the re-injection smtpd, e.g. 127.0.0.1:10026): greeting,
 * EHLO with capability discovery, one command at a time with a timeout each, and DATA streamed from a readable
 * with dot-stuffing and back-pressure. Any failure (refused, timeout, closed, unparsable reply) rejects with
 * NextHopError; the session then answers Postfix 4xx so the mail stays queued.
 */
import { connect, type Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Writable, type Readable, type Transform } from 'node:stream';
import { waitForRoom } from '../core/socket-room.js';
import { DotStuffer } from '../smtp/dot-streams.js';
import { LineReader } from '../smtp/line-reader.js';
import { ReplyParser, type ParsedReply } from '../smtp/reply-parser.js';

export class NextHopError extends Error {
  override readonly name = 'NextHopError';
}

export interface NextHopOptions {
  readonly host: string;
  readonly port: number;
  /** Our name in EHLO. */
  readonly helo: string;
  readonly connectTimeoutMs: number;
  /** Per command (and for the greeting). */
  readonly commandTimeoutMs: number;
  /** For the reply to the final dot (the next hop may scan too). */
  readonly dataTimeoutMs: number;
}

/** Longest reply line we read from the next hop. */
const REPLY_LINE_CAP = 4096;

export class NextHopClient {
  private socket: Socket | undefined;
  private readonly reader = new LineReader(REPLY_LINE_CAP);
  private readonly parser = new ReplyParser();
  private readonly replies: ParsedReply[] = [];
  private waiter: ((r: ParsedReply | Error) => void) | undefined;
  private failure: Error | undefined;
  /** Message bytes are being written: nothing else may go on the wire (it would become message content). */
  private streaming = false;
  /** EHLO keywords (upper case) → parameters. */
  readonly extensions = new Map<string, string>();

  constructor(private readonly options: NextHopOptions) {}

  get usable(): boolean {
    return this.socket !== undefined && !this.socket.destroyed && this.failure === undefined;
  }

  /** Connects, reads the greeting, sends EHLO (HELO if EHLO is refused). Returns the greeting. */
  async open(): Promise<void> {
    const { host, port, connectTimeoutMs } = this.options;
    const socket = connect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        socket.destroy();
        reject(new NextHopError(`connect to ${host}:${port} timed out`));
      }, connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(t);
        reject(new NextHopError(`connect to ${host}:${port}: ${err.message}`));
      });
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new NextHopError(`next hop: ${err.message}`)));
    socket.on('close', () => this.fail(new NextHopError('next hop closed the connection')));
    const greeting = await this.read(this.options.commandTimeoutMs);
    if (greeting.code !== 220) throw new NextHopError(`next hop greeting ${greeting.code}`);
    let ehlo = await this.command(`EHLO ${this.options.helo}`);
    if (ehlo.code !== 250) {
      ehlo = await this.command(`HELO ${this.options.helo}`);
      if (ehlo.code !== 250) throw new NextHopError(`next hop refused HELO with ${ehlo.code}`);
      return;
    }
    for (const line of ehlo.lines.slice(1)) {
      const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(line);
      if (m) this.extensions.set(m[1]!.toUpperCase(), m[2] ?? '');
    }
  }

  has(ext: string): boolean {
    return this.extensions.has(ext);
  }

  /**
   * Sends one command line (without CRLF) and waits for its reply: a completion (2xx, 4xx or 5xx). Any other reply
   * (1xx, 3xx) is a next hop out of step with us: it fails the connection.
   */
  async command(line: string, timeoutMs = this.options.commandTimeoutMs): Promise<ParsedReply> {
    this.write(`${line}\r\n`);
    return this.completion(await this.read(timeoutMs), line.split(' ', 1)[0]!);
  }

  /**
   * DATA: sends the command, streams `content` (CRLF lines, not stuffed) through `transforms` and dot-stuffing,
   * ends with the final dot. Returns the refusal (4xx/5xx) if DATA is refused, else the reply to the final dot.
   * Any other answer to DATA than 354 or a refusal (a 250, say) fails the connection: the message was not sent,
   * so nothing may be passed back that Postfix could take for its acceptance.
   */
  async data(content: Readable, transforms: readonly Transform[]): Promise<ParsedReply> {
    this.write('DATA\r\n');
    const go = await this.read(this.options.commandTimeoutMs);
    if (go.code !== 354) {
      if (go.code >= 400 && go.code < 600) return go;
      this.fail(new NextHopError(`next hop answered DATA with ${go.code}, not 354`));
      throw this.failure;
    }
    const socket = this.socket!;
    // Write to the socket without letting pipeline() end or destroy it. A write waiting for room ends when the
    // socket drains, closes (a lost next hop fails the transfer), or takes nothing for dataTimeoutMs (given up,
    // like Postfix's smtp_data_xfer_timeout).
    const idleMs = this.options.dataTimeoutMs;
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        if (this.failure) return cb(this.failure);
        if (socket.write(chunk)) return cb();
        void waitForRoom(socket, idleMs).then((room) => {
          if (room === 'timeout') this.fail(new NextHopError(`next hop took no message data for ${idleMs} ms`));
          else if (room === 'closed') this.fail(new NextHopError('next hop closed the connection'));
          cb(this.failure);
        });
      },
    });
    this.streaming = true;
    try {
      await pipeline([content, ...transforms, new DotStuffer(), sink]);
      this.streaming = false;
    } catch (err) {
      this.fail(err instanceof NextHopError ? err : new NextHopError(`sending the message failed: ${(err as Error).message}`));
      throw this.failure;
    }
    return this.completion(await this.read(this.options.dataTimeoutMs), 'the final dot');
  }

  /** The reply itself if it completes a command (2xx, 4xx, 5xx); otherwise the connection fails. */
  private completion(reply: ParsedReply, what: string): ParsedReply {
    const c = reply.code;
    if ((c >= 200 && c < 300) || (c >= 400 && c < 600)) return reply;
    this.fail(new NextHopError(`next hop answered ${what} with ${c}`));
    throw this.failure;
  }

  /** QUIT politely (bounded), then close. */
  async close(): Promise<void> {
    // In the middle of DATA a QUIT would be message content: drop the connection, the next hop discards the message.
    if (this.usable && !this.streaming) {
      try {
        await this.command('QUIT', 2000);
      } catch {
        /* closing anyway */
      }
    }
    this.socket?.destroy();
  }

  destroy(): void {
    this.socket?.destroy();
  }

  private write(text: string): void {
    if (!this.usable) throw this.failure ?? new NextHopError('next hop not connected');
    this.socket!.write(text);
  }

  private onData(chunk: Buffer): void {
    this.reader.push(chunk);
    for (let ev = this.reader.next(); ev !== undefined; ev = this.reader.next()) {
      if (ev.kind === 'too-long') {
        this.fail(new NextHopError('next hop sent an overlong reply line'));
        return;
      }
      const r = this.parser.pushLine(ev.line);
      if (r?.kind === 'error') {
        this.fail(new NextHopError(`next hop reply: ${r.problem}`));
        return;
      }
      if (r?.kind === 'reply') {
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          w(r.reply);
        } else if (this.replies.length < 10) {
          this.replies.push(r.reply);
        } else {
          this.fail(new NextHopError('next hop sent replies nobody asked for'));
        }
      }
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.socket?.destroy();
    const w = this.waiter;
    this.waiter = undefined;
    w?.(err);
  }

  private read(timeoutMs: number): Promise<ParsedReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        this.fail(new NextHopError(`next hop did not answer within ${timeoutMs} ms`));
        reject(this.failure);
      }, timeoutMs);
      this.waiter = (r) => {
        clearTimeout(t);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
    });
  }
}
