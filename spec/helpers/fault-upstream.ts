/**
 * A small scriptable SMTP server for fault injection behind the intercept door: configurable greeting and EHLO
 * capabilities, per-verb replies and delays, and faults (reset the connection after N DATA bytes, close at a
 * verb, say nothing). Records every byte each connection received and every complete message (dot-unstuffed).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { LineReader } from '../../lib/smtp/line-reader.js';
import { DataFramer } from '../../lib/smtp/data-framer.js';

export interface FaultScript {
  readonly greeting?: string;
  /** EHLO keywords after the first line (default PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME). */
  readonly capabilities?: readonly string[];
  /** Full reply text (CRLF included) per upper-case verb, overriding the default. */
  readonly replies?: Readonly<Record<string, string>>;
  /** Reply for the end of data (default "250 2.0.0 Ok: queued"). */
  readonly eomReply?: string;
  /** Delay in ms before answering a verb ("EOM" for the end of data, "GREETING"). */
  readonly delays?: Readonly<Record<string, number>>;
  /** Destroy the connection after this many DATA bytes. */
  readonly resetAfterDataBytes?: number;
  /** Destroy the connection when this verb arrives. */
  readonly closeAt?: string;
  /** A slow next hop: stop reading for `ms` after every `everyBytes` DATA bytes. */
  readonly slowData?: { readonly everyBytes: number; readonly ms: number };
  /** Never send the greeting. */
  readonly silent?: boolean;
  /** AUTH (without initial response) gets "334 ", the next line "235 2.7.0 Authentication successful". */
  readonly auth?: boolean;
}

export interface FaultConnection {
  /** Every byte received, latin1. */
  raw: string;
  /** Commands received (lines outside DATA). */
  commands: string[];
  /** Messages whose end of data arrived (unstuffed content). */
  messages: string[];
  /** DATA content received so far for an unfinished message. */
  partial: string;
  closed: boolean;
}

export interface FaultUpstream {
  readonly port: number;
  readonly connections: FaultConnection[];
  /** Resolves when `n` connections have closed. */
  waitClosed(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultUpstream(script: FaultScript = {}, host = '127.0.0.1'): Promise<FaultUpstream> {
  const connections: FaultConnection[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    const conn: FaultConnection = { raw: '', commands: [], messages: [], partial: '', closed: false };
    connections.push(conn);
    socket.on('close', () => {
      conn.closed = true;
      sockets.delete(socket);
    });
    const reader = new LineReader(1 << 20);
    let framer: DataFramer | undefined;
    let dataBytes = 0;
    let chain = Promise.resolve();
    const send = (verb: string, text: string): void => {
      const d = script.delays?.[verb] ?? 0;
      chain = chain.then(async () => {
        if (d > 0) await new Promise((r) => setTimeout(r, d));
        if (!socket.destroyed) socket.write(text);
      });
    };
    if (!script.silent) send('GREETING', script.greeting ?? '220 fault.test ESMTP ready\r\n');
    let saslNext = false;
    const onLine = (line: string): void => {
      conn.commands.push(line);
      if (saslNext) {
        saslNext = false;
        send('AUTH', line === '*' ? '501 5.7.0 Authentication aborted\r\n' : '235 2.7.0 Authentication successful\r\n');
        return;
      }
      const verb = (line.split(' ')[0] ?? '').toUpperCase();
      if (script.closeAt === verb) {
        socket.destroy();
        return;
      }
      const custom = script.replies?.[verb];
      if (custom !== undefined) {
        send(verb, custom);
        if (verb === 'DATA' && custom.startsWith('354')) framer = new DataFramer('normalise');
        if (verb === 'QUIT') chain = chain.then(() => void socket.end());
        return;
      }
      switch (verb) {
        case 'AUTH':
          if (script.auth) {
            if (line.trim().split(/\s+/).length > 2) send(verb, '235 2.7.0 Authentication successful\r\n');
            else {
              saslNext = true;
              send(verb, '334 \r\n');
            }
            return;
          }
          send(verb, '502 5.5.2 Error: command not recognized\r\n');
          return;
        case 'EHLO': {
          const caps = script.capabilities ?? ['PIPELINING', 'ENHANCEDSTATUSCODES', '8BITMIME'];
          const lines = ['fault.test', ...caps];
          send(verb, lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
          return;
        }
        case 'HELO':
          send(verb, '250 fault.test\r\n');
          return;
        case 'MAIL':
        case 'RCPT':
        case 'RSET':
        case 'NOOP':
          send(verb, '250 2.0.0 Ok\r\n');
          return;
        case 'DATA':
          send(verb, '354 End data with <CR><LF>.<CR><LF>\r\n');
          framer = new DataFramer('normalise');
          dataBytes = 0;
          nextPause = script.slowData?.everyBytes ?? 0;
          return;
        case 'QUIT':
          send(verb, '221 2.0.0 Bye\r\n');
          chain = chain.then(() => void socket.end());
          return;
        default:
          send(verb, '502 5.5.2 Error: command not recognized\r\n');
      }
    };
    let nextPause = 0;
    const onData = (chunk: Buffer): void => {
      if (framer) {
        dataBytes += chunk.length;
        const slow = script.slowData;
        if (slow && dataBytes >= nextPause) {
          nextPause = dataBytes + slow.everyBytes;
          socket.pause();
          setTimeout(() => socket.resume(), slow.ms);
        }
        if (script.resetAfterDataBytes !== undefined && dataBytes >= script.resetAfterDataBytes) {
          socket.resetAndDestroy();
          return;
        }
        const out = framer.push(chunk);
        conn.partial += Buffer.concat(out.content).toString('latin1');
        if (out.end) {
          conn.messages.push(conn.partial);
          conn.partial = '';
          framer = undefined;
          send('EOM', script.eomReply ?? '250 2.0.0 Ok: queued\r\n');
          if (out.rest && out.rest.length) onData(out.rest);
        }
        return;
      }
      reader.push(chunk);
      for (let ev = reader.next(); ev; ev = reader.next()) {
        if (ev.kind === 'line') onLine(ev.line.toString('latin1'));
        if (framer) {
          const rest = reader.takeRest();
          if (rest.length) onData(rest);
          return;
        }
      }
    };
    socket.on('data', (chunk: Buffer) => {
      conn.raw += chunk.toString('latin1');
      onData(chunk);
    });
  });
  await new Promise<void>((res) => server.listen(0, host, res));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    connections,
    async waitClosed(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (connections.filter((c) => c.closed).length < n) {
        if (Date.now() > deadline) throw new Error(`only ${connections.filter((c) => c.closed).length} of ${n} upstream connections closed`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}
