/**
 * A minimal door for lifecycle tests: a line server that answers "who" with the hostname from the deps its
 * session started with (so a test sees which configuration a session runs under), "sessions" with the count.
 * It drains like a real door: stop() closes the listener at once and waits for sessions up to drainMs.
 */
import { createServer, type Socket } from 'node:net';
import type { Door, DoorDeps } from '../../lib/daemon/door.js';
import type { InterceptListenerConfig } from '../../lib/daemon/config-types.js';

export function createTestDoor(settings: InterceptListenerConfig, initial: DoorDeps): Door {
  let deps = initial;
  const sockets = new Set<Socket>();
  let address = '';
  const server = createServer((sock) => {
    const mine = deps;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line === 'who') sock.write(`${mine.hostname}\n`);
        else if (line === 'quit') sock.end('bye\n');
        else sock.write('?\n');
      }
    });
    sock.write(`hello ${settings.name}\n`);
  });
  return {
    name: settings.name,
    start: () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(settings.listen.port, settings.listen.host, () => {
          server.off('error', reject);
          const a = server.address();
          address = typeof a === 'object' && a ? `${a.address}:${a.port}` : '';
          resolve();
        });
      }),
    stop: async (drainMs) => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      const deadline = Date.now() + drainMs;
      while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const s of sockets) s.destroy();
      await closed;
    },
    update: (d) => {
      deps = d;
    },
    get addresses() {
      return address ? [address] : [];
    },
    get activeSessions() {
      return sockets.size;
    },
  };
}

/** A line client for the test door (and any line protocol): connect, read the greeting, ask, close. */
export class LineClient {
  private buf = '';
  private waiters: Array<(line: string | Error) => void> = [];
  private closed = false;
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w(new Error('connection closed'));
    });
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0 && this.waiters.length > 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiters.shift()?.(line);
      }
    });
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<LineClient> {
    const { connect } = await import('node:net');
    return await new Promise((resolve, reject) => {
      const s = connect(port, host, () => resolve(new LineClient(s)));
      s.once('error', reject);
    });
  }

  readLine(timeoutMs = 3000): Promise<string> {
    const i = this.buf.indexOf('\n');
    if (i >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      return Promise.resolve(line);
    }
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no line within ' + timeoutMs + ' ms')), timeoutMs);
      this.waiters.push((l) => {
        clearTimeout(t);
        if (l instanceof Error) reject(l);
        else resolve(l);
      });
    });
  }

  async ask(line: string): Promise<string> {
    if (!this.closed) this.sock.write(line + '\n');
    return await this.readLine();
  }

  close(): void {
    this.sock.destroy();
  }
}
