/**
 * A raw text client for door specs: buffers what a socket receives and waits until a parser can take one unit
 * (an SMTP reply, a policy answer block) off the front, or the socket closes, or the deadline passes.
 */
import { connect, type Socket } from 'node:net';

/** Takes one unit off the front of `buf`: its value and what is left, or undefined if not complete yet. */
export type TakeUnit<T> = (buf: string) => { readonly value: T; readonly rest: string } | undefined;

export class SocketBuffer {
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(
    readonly socket: Socket,
    encoding: BufferEncoding,
  ) {
    socket.setEncoding(encoding);
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** A connected socket to 127.0.0.1:`to`, or to the unix socket `to.path`. */
  static async connectTo(to: number | { readonly path: string }): Promise<Socket> {
    const s = typeof to === 'number' ? connect({ host: '127.0.0.1', port: to }) : connect({ path: to.path });
    await new Promise<void>((res, rej) => {
      s.once('connect', () => res());
      s.once('error', rej);
    });
    return s;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next unit, or undefined once the socket closed without one; throws after `timeoutMs` naming `what`. */
  async take<T>(parse: TakeUnit<T>, timeoutMs: number, what: string): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = parse(this.buf);
      if (got) {
        this.buf = got.rest;
        return got.value;
      }
      if (this.closed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} in time; have ${JSON.stringify(this.buf)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }
}
