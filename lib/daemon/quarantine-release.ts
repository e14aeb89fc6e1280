/**
 * Re-sends a quarantined message by SMTP (EHLO, falling back to HELO; MAIL; RCPT per recipient; DATA with
 * dot-stuffing; QUIT). Bounded: reply lines are capped, every step has a timeout.
 */
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { ReplyParser, type ParsedReply } from '../smtp/reply-parser.js';
import { DotStuffer } from '../smtp/dot-streams.js';
import { waitForRoom } from '../core/socket-room.js';

export interface ReleaseTarget {
  readonly host: string;
  readonly port: number;
  /** Our EHLO name. */
  readonly helo: string;
  readonly timeoutMs?: number;
}

export interface ReleaseResult {
  readonly delivered: boolean;
  readonly accepted: readonly string[];
  readonly rejected: ReadonlyArray<{ readonly rcpt: string; readonly reply: string }>;
  /** The final reply (to DATA's end, or the one that stopped the transaction). */
  readonly reply: string;
}

const MAX_LINE = 4096;

class SmtpConversation {
  private buf = '';
  private readonly parser = new ReplyParser(100);
  private waiting: { resolve: (r: ParsedReply) => void; reject: (e: Error) => void } | undefined;
  private readonly replies: ParsedReply[] = [];
  private failure: Error | undefined;

  constructor(
    readonly sock: Socket,
    private readonly timeoutMs: number,
  ) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('connection closed')));
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      const ev = this.parser.pushLine(line);
      if (ev?.kind === 'error') return this.fail(new Error(`bad reply: ${ev.problem}`));
      if (ev?.kind === 'reply') {
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = undefined;
          w.resolve(ev.reply);
        } else this.replies.push(ev.reply);
      }
    }
    if (this.buf.length > MAX_LINE) this.fail(new Error('reply line too long'));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(e);
  }

  async reply(): Promise<ParsedReply> {
    const queued = this.replies.shift();
    if (queued) return queued;
    if (this.failure) throw this.failure;
    return await new Promise<ParsedReply>((resolve, reject) => {
      const t = setTimeout(() => this.fail(new Error(`no reply within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.waiting = {
        resolve: (r) => {
          clearTimeout(t);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
    });
  }

  async command(line: string): Promise<ParsedReply> {
    if (/[\r\n]/.test(line)) throw new Error('command contains a line break');
    this.sock.write(line + '\r\n', 'latin1');
    return await this.reply();
  }
}

function text(r: ParsedReply): string {
  return r.raw.replace(/\r\n$/, '').replace(/\r\n/g, ' / ');
}

function pathArg(addr: string): string {
  if (/[<>\s]/.test(addr)) throw new Error(`address ${JSON.stringify(addr)} cannot be sent`);
  return `<${addr}>`;
}

export async function releaseMessage(target: ReleaseTarget, sender: string, recipients: readonly string[], message: Readable): Promise<ReleaseResult> {
  const timeoutMs = target.timeoutMs ?? 60_000;
  const sock = connect({ host: target.host, port: target.port });
  const conv = new SmtpConversation(sock, timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connect timeout')), timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    const greet = await conv.reply();
    if (greet.code !== 220) return { delivered: false, accepted: [], rejected: [], reply: text(greet) };
    let ehlo = await conv.command(`EHLO ${target.helo}`);
    const caps = ehlo.code === 250 ? ehlo.lines.slice(1).map((l) => l.split(' ')[0]?.toUpperCase()) : [];
    if (ehlo.code !== 250) ehlo = await conv.command(`HELO ${target.helo}`);
    if (ehlo.code !== 250) return { delivered: false, accepted: [], rejected: [], reply: text(ehlo) };
    const params = caps.includes('8BITMIME') ? ' BODY=8BITMIME' : '';
    const utf8 = caps.includes('SMTPUTF8') && [sender, ...recipients].some((a) => /[^\x00-\x7f]/.test(a)) ? ' SMTPUTF8' : '';
    const mail = await conv.command(`MAIL FROM:${pathArg(sender)}${params}${utf8}`);
    if (mail.code !== 250) return { delivered: false, accepted: [], rejected: [], reply: text(mail) };
    const accepted: string[] = [];
    const rejected: Array<{ rcpt: string; reply: string }> = [];
    for (const r of recipients) {
      const rr = await conv.command(`RCPT TO:${pathArg(r)}`);
      if (rr.code === 250 || rr.code === 251) accepted.push(r);
      else rejected.push({ rcpt: r, reply: text(rr) });
    }
    if (accepted.length === 0) {
      await conv.command('QUIT').catch(() => undefined);
      return { delivered: false, accepted, rejected, reply: 'no recipient accepted' };
    }
    const data = await conv.command('DATA');
    if (data.code !== 354) return { delivered: false, accepted: [], rejected, reply: text(data) };
    const stuffer = new DotStuffer();
    message.pipe(stuffer);
    for await (const chunk of stuffer) {
      if (sock.write(chunk as Buffer)) continue;
      const room = await waitForRoom(sock, timeoutMs);
      if (room === 'closed') throw new Error('the next hop closed the connection during DATA');
      if (room === 'timeout') throw new Error(`the next hop took no data for ${timeoutMs} ms`);
    }
    const end = await conv.reply();
    await conv.command('QUIT').catch(() => undefined);
    return { delivered: end.code === 250, accepted: end.code === 250 ? accepted : [], rejected, reply: text(end) };
  } finally {
    sock.destroy();
  }
}
