/** A minimal SMTP client for milter integration tests: exact reply lines, raw control over the dialogue. */
import { connect, type Socket } from 'node:net';

/** A minimal SMTP client: sends one line, returns the full (multi-line) reply. */
export class SmtpDialog {
  private buf = '';
  private waiting: (() => void) | undefined;
  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.waiting?.();
    });
    socket.on('error', () => undefined);
  }
  static async open(port: number): Promise<SmtpDialog> {
    const s = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    return new SmtpDialog(s);
  }
  async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0].replace(/\r/g, '').trimEnd();
      }
      if (Date.now() > deadline) throw new Error(`no SMTP reply; buffer: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.waiting = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }
  async cmd(line: string): Promise<string> {
    this.socket.write(line + '\r\n');
    return await this.reply();
  }
  close(): void {
    this.socket.destroy();
  }
}

