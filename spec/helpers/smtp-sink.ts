/**
 * Postfix's smtp-sink as a real SMTP peer for tests: it accepts everything (unless told to reject) and dumps each
 * transaction to its own file, which `messages()` parses into envelope + headers + body.
 *
 *   /usr/sbin/smtp-sink -u nobody -d DIR/%H%M%S. [extra flags] 127.0.0.1:PORT BACKLOG
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { makeTempDir } from './temp-dir.js';

export const SMTP_SINK = '/usr/sbin/smtp-sink';
export const smtpSinkAvailable: boolean = existsSync(SMTP_SINK);

/** uid/gid of `nobody`, which smtp-sink switches to when started as root (it must, with -u). */
const NOBODY = { uid: 65534, gid: 65534 };

export interface SmtpSinkOptions {
  /** Extra smtp-sink flags, e.g. ['-F'] (no XFORWARD), ['-f', 'RCPT'] (hard-reject RCPT), ['-w', '5']. */
  readonly flags?: readonly string[];
  /** Put the dump directory here (it is created; it must be reachable by `nobody`); default: a new temp dir. */
  readonly dir?: string;
  readonly port?: number;
  readonly hostname?: string;
}

/** One dumped transaction. */
export interface SinkMessage {
  readonly file: string;
  /** X-Client-Addr: the address the sink saw (the last hop, e.g. Postfix's smtp client). */
  readonly clientAddr: string;
  readonly clientProto: string;
  readonly helo?: string;
  /** X-Mail-Args, e.g. "FROM:<a@b> SIZE=123". */
  readonly mailArgs: string;
  /** X-Rcpt-Args, one per RCPT, e.g. "TO:<c@d>". */
  readonly rcptArgs: readonly string[];
  /** Sender / recipients without angle brackets or parameters. */
  readonly sender: string;
  readonly recipients: readonly string[];
  /** The message as the client sent it (after the sink's own Received header), LF line ends. */
  readonly content: string;
  /** Header fields of `content` (unfolded), in order. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  readonly body: string;
}

export interface SmtpSink {
  readonly port: number;
  readonly host: string;
  /** "[127.0.0.1]:PORT", for relayhost / next-hop settings. */
  readonly relayhost: string;
  readonly dumpDir: string;
  /** Every complete message dumped so far, oldest first. */
  messages(): SinkMessage[];
  /** Waits until at least `count` complete messages are dumped; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs?: number): Promise<SinkMessage[]>;
  /** Output the sink wrote (for diagnosing failures). */
  readonly stderr: () => string;
  stop(): Promise<void>;
}

/** Splits a header block into unfolded (name, value) pairs. */
export function parseHeaderBlock(block: string): Array<readonly [string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of block.split('\n')) {
    if (line === '') continue;
    if ((line.startsWith(' ') || line.startsWith('\t')) && out.length > 0) {
      const last = out[out.length - 1]!;
      last[1] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return out;
}

function stripAddr(arg: string, verb: 'FROM' | 'TO'): string {
  // smtp-sink records the arguments without the "FROM:"/"TO:" keyword; accept both forms.
  const rest = arg.replace(new RegExp(`^${verb}:\\s*`, 'i'), '');
  const m = /^<([^>]*)>/.exec(rest);
  return m ? m[1]! : rest.split(' ')[0]!;
}

/** Parses one smtp-sink dump file. Returns undefined while the file is still incomplete. */
export function parseSinkDump(file: string, text: string): SinkMessage | undefined {
  // Sink headers end with its three-line Received header; then the client's message; then one empty line.
  const lines = text.split('\n');
  let i = 0;
  const fields: Record<string, string[]> = {};
  for (; i < lines.length; i++) {
    const line = lines[i]!;
    const m = /^(X-[A-Za-z-]+): ?(.*)$/.exec(line);
    if (!m) break;
    (fields[m[1]!] ??= []).push(m[2]!);
  }
  if (!lines[i]?.startsWith('Received:')) return undefined;
  i++;
  while (i < lines.length && /^[ \t]/.test(lines[i]!)) i++;
  if (!text.endsWith('\n\n')) return undefined;
  const content = lines.slice(i, lines.length - 2).join('\n') + '\n';
  const sep = content.indexOf('\n\n');
  const headerBlock = sep < 0 ? content : content.slice(0, sep + 1);
  const body = sep < 0 ? '' : content.slice(sep + 2);
  const mailArgs = fields['X-Mail-Args']?.[0] ?? '';
  const rcptArgs = fields['X-Rcpt-Args'] ?? [];
  const helo = fields['X-Helo-Args']?.[0];
  return {
    file,
    clientAddr: fields['X-Client-Addr']?.[0] ?? '',
    clientProto: fields['X-Client-Proto']?.[0] ?? '',
    ...(helo !== undefined ? { helo } : {}),
    mailArgs,
    rcptArgs,
    sender: stripAddr(mailArgs, 'FROM'),
    recipients: rcptArgs.map((r) => stripAddr(r, 'TO')),
    content,
    headers: parseHeaderBlock(headerBlock),
    body,
  };
}

async function waitForListen(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const host = '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  const temp = options.dir === undefined ? makeTempDir('sluice-sink-') : undefined;
  const base = options.dir ?? temp!.path;
  const dumpDir = join(base, 'dump');
  mkdirSync(dumpDir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    chmodSync(base, 0o755);
    chownSync(dumpDir, NOBODY.uid, NOBODY.gid);
  }
  const args = [
    ...(asRoot ? ['-u', 'nobody'] : []),
    '-h',
    options.hostname ?? 'sink.test',
    '-d',
    join(dumpDir, '%H%M%S.'),
    ...(options.flags ?? []),
    `${host}:${port}`,
    '64',
  ];
  let errText = '';
  const child: ChildProcess = spawn(SMTP_SINK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => {
    if (errText.length < 65536) errText += d.toString('utf8');
  });
  child.stderr?.on('data', (d: Buffer) => {
    if (errText.length < 65536) errText += d.toString('utf8');
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  try {
    await waitForListen(host, port, 5000);
  } catch (err) {
    child.kill('SIGKILL');
    temp?.remove();
    throw new Error(`smtp-sink did not start: ${(err as Error).message}\n${errText}`);
  }

  const messages = (): SinkMessage[] => {
    if (!existsSync(dumpDir)) return [];
    // smtp-sink removes the file of an aborted transaction (e.g. the door dropped the connection before the
    // final dot), possibly between our listing and our read: a file that vanished was never a message.
    const read: Array<{ f: string; mtime: number; text: string }> = [];
    for (const name of readdirSync(dumpDir)) {
      const f = join(dumpDir, name);
      try {
        const st = statSync(f);
        if (st.isFile()) read.push({ f, mtime: st.mtimeMs, text: readFileSync(f, 'latin1') });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    read.sort((a, b) => a.mtime - b.mtime || a.f.localeCompare(b.f));
    const out: SinkMessage[] = [];
    for (const { f, text } of read) {
      const m = parseSinkDump(f, text);
      if (m) out.push(m);
    }
    return out;
  };

  return {
    port,
    host,
    relayhost: `[${host}]:${port}`,
    dumpDir,
    messages,
    async waitForMessages(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = messages();
        if (got.length >= count) return got;
        if (Date.now() > deadline) throw new Error(`smtp-sink: expected ${count} message(s), have ${got.length} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stderr: () => errText,
    async stop() {
      if (!exited) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 2000);
        await gone;
        clearTimeout(t);
      }
      temp?.remove();
    },
  };
}
