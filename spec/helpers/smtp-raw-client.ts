/**
 * A raw SMTP client over a plain socket for tests: writes exact bytes and reads replies exactly as sent.
 * `reply()` resolves with the next complete reply (all its lines, CRLF included); `closed` resolves on close.
 */
import { connect, type Socket } from 'node:net';
import { LineReader } from '../../lib/smtp/line-reader.js';
import { ReplyParser } from '../../lib/smtp/reply-parser.js';

export interface RawClient {
  readonly socket: Socket;
  /** Everything received so far. */
  received(): string;
  write(data: string | Buffer): void;
  /** Writes `line` + CRLF and returns the next reply. */
  cmd(line: string, timeoutMs?: number): Promise<string>;
  /** The next complete reply's raw text. */
  reply(timeoutMs?: number): Promise<string>;
  /** Resolves when the server closed the connection. */
  readonly closed: Promise<void>;
  close(): void;
}

export async function rawClient(port: number, host = '127.0.0.1'): Promise<RawClient> {
  const socket: Socket = connect({ host, port });
  await new Promise<void>((res, rej) => {
    socket.once('connect', res);
    socket.once('error', rej);
  });
  socket.on('error', () => undefined);
  let all = '';
  const replies: string[] = [];
  const waiters: Array<(r: string) => void> = [];
  const reader = new LineReader(1 << 20);
  const parser = new ReplyParser(10_000);
  socket.on('data', (chunk: Buffer) => {
    all += chunk.toString('latin1');
    reader.push(chunk);
    for (let ev = reader.next(); ev; ev = reader.next()) {
      if (ev.kind !== 'line') continue;
      const r = parser.pushLine(ev.line);
      if (!r) continue;
      const text = r.kind === 'reply' ? r.reply.raw : `PARSE-ERROR ${ev.line.toString('latin1')}\r\n`;
      const w = waiters.shift();
      if (w) w(text);
      else replies.push(text);
    }
  });
  const closed = new Promise<void>((res) => socket.once('close', () => res()));
  const reply = (timeoutMs = 5000): Promise<string> => {
    const ready = replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((res, rej) => {
      const t = setTimeout(() => {
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        rej(new Error(`no reply within ${timeoutMs} ms; received so far: ${JSON.stringify(all.slice(-500))}`));
      }, timeoutMs);
      const done = (r: string): void => {
        clearTimeout(t);
        res(r);
      };
      waiters.push(done);
      void closed.then(() => {
        const i = waiters.indexOf(done);
        if (i >= 0) {
          waiters.splice(i, 1);
          clearTimeout(t);
          res('CLOSED');
        }
      });
    });
  };
  return {
    socket,
    received: () => all,
    write: (d) => void socket.write(d),
    cmd: (line, t) => {
      socket.write(line + '\r\n');
      return reply(t);
    },
    reply,
    closed,
    close: () => socket.destroy(),
  };
}
