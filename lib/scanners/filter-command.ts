/**
 * The external filter command, with proxsmtpd's contract (proxsmtpd(8), FilterCommand/FilterType):
 *  - pipe mode: the message on stdin, the (possibly rewritten) message on stdout;
 *  - file mode: EMAIL names a private 0600 copy of the message, the command may edit it in place;
 *  - exit 0 delivers (the rewritten message replaces the original where the door can do that);
 *  - non-zero: the last stderr line is the reply: "NNN text" is used as is, bare text becomes
 *    "550 Content Rejected; text", nothing becomes "550 Content Rejected"; a 2xx code drops the message silently;
 *  - a crash, a signal, a timeout or an oversized output is an error (the rules decide; default: tempfail).
 * Unlike proxsmtpd there is no shell: argv is executed as given, and the envelope reaches the command only as
 * environment values, so shell metacharacters and newlines in SENDER or RECIPIENTS are inert data.
 * The command runs in its own process group; a timeout kills the whole group (its children too).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LineEndNormalizer } from './line-ends.js';
import { createPrivateFile } from './message-spool.js';

export type FilterMode = 'pipe' | 'file';

export interface FilterCommandOptions {
  /** Program and arguments; never run through a shell. */
  readonly argv: readonly string[];
  readonly mode: FilterMode;
  readonly timeoutMs: number;
  /** Private directory (0700) for the message copy and the output; also the command's TMPDIR and cwd. */
  readonly tempDir: string;
  /** Largest rewritten message accepted (stdout in pipe mode, the edited file in file mode). */
  readonly maxOutputBytes: number;
  /** PATH for the command (default /usr/local/bin:/usr/bin:/bin). Nothing else is inherited from sluice. */
  readonly path?: string;
  /** Extra fixed environment values from the configuration. */
  readonly env?: Readonly<Record<string, string>>;
}

/** proxsmtpd's environment, from the transaction. */
export interface FilterEnvironment {
  /** CLIENT: the SMTP client's address. */
  readonly client: string;
  /** SENDER: the envelope sender ("" for <>). */
  readonly sender: string;
  /** RECIPIENTS: accepted recipients, one per line. */
  readonly recipients: readonly string[];
  /** REMOTE / REMOTE_HELO: the original client as forwarded (XFORWARD, milter), when known. */
  readonly remote?: string;
  readonly remoteHelo?: string;
  /** SERVER: the next hop's address, when known. */
  readonly server?: string;
  /** HELO: the client's HELO/EHLO name (Halon fork). */
  readonly helo?: string;
}

export type FilterResult =
  | { readonly kind: 'pass'; readonly rewritten?: { readonly path: string; readonly size: number } }
  /** Non-zero exit; code from the last stderr line (2xx = drop silently). `reply` is the text after the code. */
  | { readonly kind: 'reply'; readonly code: number; readonly reply: string; readonly exitCode: number }
  | { readonly kind: 'error'; readonly message: string };

const STDERR_KEEP = 8192;
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
/** After the command exited, how long its stdout/stderr may stay open (held by a child it left behind). */
const EXIT_GRACE_MS = 1000;

/** Environment values may not contain NUL (execve would refuse them); everything else passes unchanged. */
function envValue(v: string): string {
  return v.replace(/\0/g, '');
}

export function filterEnvironment(options: FilterCommandOptions, env: FilterEnvironment, emailPath?: string): Record<string, string> {
  const out: Record<string, string> = { PATH: options.path ?? DEFAULT_PATH };
  for (const [k, v] of Object.entries(options.env ?? {})) out[k] = envValue(v);
  out['CLIENT'] = envValue(env.client);
  out['SENDER'] = envValue(env.sender);
  out['RECIPIENTS'] = envValue(env.recipients.join('\n'));
  if (env.remote !== undefined) out['REMOTE'] = envValue(env.remote);
  if (env.remoteHelo !== undefined) out['REMOTE_HELO'] = envValue(env.remoteHelo);
  if (env.server !== undefined) out['SERVER'] = envValue(env.server);
  if (env.helo !== undefined) out['HELO'] = envValue(env.helo);
  if (emailPath !== undefined) out['EMAIL'] = emailPath;
  out['TMPDIR'] = options.tempDir;
  return out;
}

/** The reply a failing filter asks for, from the last non-empty stderr line. */
export function replyFromStderr(stderr: string): { code: number; reply: string } {
  const lines = stderr.split('\n').map((l) => l.replace(/\r$/, ''));
  let last = '';
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = (lines[i] ?? '').trim();
    if (l !== '') {
      last = l;
      break;
    }
  }
  // Printable text only, bounded: this text reaches a peer.
  last = last.replace(/[^\x20-\x7e]/g, '?').slice(0, 400);
  const m = /^([245]\d\d)(?:[ -](.*))?$/.exec(last);
  if (m) return { code: Number(m[1]), reply: (m[2] ?? '').trim() || 'Content Rejected' };
  return { code: 550, reply: last === '' ? 'Content Rejected' : `Content Rejected; ${last}` };
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** Copies `from` into a new private file, normalising line ends and hashing; fails past `max` bytes. */
async function copyNormalised(from: Readable, dir: string, max: number): Promise<{ path: string; size: number; digest: string }> {
  const { path, fh } = await createPrivateFile(dir, 'rewritten-');
  const norm = new LineEndNormalizer();
  const hash = createHash('sha256');
  let size = 0;
  try {
    const put = async (b: Buffer): Promise<void> => {
      if (b.length === 0) return;
      size += b.length;
      if (size > max) throw new Error(`filter output larger than ${max} bytes`);
      hash.update(b);
      await fh.write(b);
    };
    for await (const chunk of from) await put(norm.push(chunk as Buffer));
    await put(norm.flush());
    await fh.close();
    return { path, size, digest: hash.digest('hex') };
  } catch (err) {
    from.destroy();
    await fh.close().catch(() => undefined);
    await rm(path, { force: true });
    throw err;
  }
}

export interface FilterInput {
  /** A fresh stream of the message (unstuffed, CRLF). */
  open(): Readable;
  /** SHA-256 of the message, to tell whether the filter changed it. */
  readonly digest?: string;
}

/** Runs the filter once. Never rejects; `signal` aborts (kills the group, removes files). */
export async function runFilterCommand(options: FilterCommandOptions, env: FilterEnvironment, input: FilterInput, signal?: AbortSignal): Promise<FilterResult> {
  const [program, ...args] = options.argv;
  if (program === undefined) return { kind: 'error', message: 'filter command has no argv' };
  const started = Date.now();
  const toRemove: string[] = [];
  let emailPath: string | undefined;
  let outFile: { path: string; fh: FileHandle } | undefined;
  try {
    if (options.mode === 'file') {
      const f = await createPrivateFile(options.tempDir, 'email-');
      emailPath = f.path;
      toRemove.push(f.path);
      try {
        for await (const chunk of input.open()) await f.fh.write(chunk as Buffer);
      } finally {
        await f.fh.close();
      }
    } else {
      outFile = await createPrivateFile(options.tempDir, 'stdout-');
      toRemove.push(outFile.path);
    }
    if (signal?.aborted) return { kind: 'error', message: 'aborted' };
    const remaining = Math.max(1, options.timeoutMs - (Date.now() - started));
    const run = await execute(program, args, options, filterEnvironment(options, env, emailPath), input, outFile?.fh, remaining, signal);
    if (outFile) await outFile.fh.close().catch(() => undefined);
    if (run.kind === 'error') return run;
    if (run.exitCode !== 0) return { kind: 'reply', ...replyFromStderr(run.stderr), exitCode: run.exitCode };
    const producedPath = emailPath ?? outFile?.path;
    if (producedPath === undefined) return { kind: 'error', message: 'no output' };
    let copy: { path: string; size: number; digest: string };
    try {
      copy = await copyNormalised(createReadStream(producedPath), options.tempDir, options.maxOutputBytes);
    } catch (err) {
      return { kind: 'error', message: (err as Error).message };
    }
    if (copy.size === 0) {
      await rm(copy.path, { force: true });
      return { kind: 'error', message: 'filter exited 0 but produced an empty message' };
    }
    if (input.digest !== undefined && copy.digest === input.digest) {
      await rm(copy.path, { force: true });
      return { kind: 'pass' };
    }
    return { kind: 'pass', rewritten: { path: copy.path, size: copy.size } };
  } catch (err) {
    return { kind: 'error', message: `filter command failed: ${(err as Error).message}` };
  } finally {
    if (outFile) await outFile.fh.close().catch(() => undefined);
    await Promise.all(toRemove.map((p) => rm(p, { force: true })));
  }
}

type RunOutcome = { kind: 'done'; exitCode: number; stderr: string } | { kind: 'error'; message: string };

async function execute(
  program: string,
  args: readonly string[],
  options: FilterCommandOptions,
  env: Record<string, string>,
  input: FilterInput,
  out: FileHandle | undefined,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<RunOutcome> {
  return await new Promise<RunOutcome>((resolve) => {
    let settled = false;
    let stderr = '';
    let outBytes = 0;
    let outFailure: string | undefined;
    let writeChain: Promise<unknown> = Promise.resolve();
    let exit: { code: number | null; sig: NodeJS.Signals | null } | undefined;
    let open = 0;
    let graceTimer: NodeJS.Timeout | undefined;
    let src: Readable | undefined;
    const child = spawn(program, [...args], {
      cwd: options.tempDir,
      env,
      detached: true,
      stdio: [options.mode === 'pipe' ? 'pipe' : 'ignore', options.mode === 'pipe' ? 'pipe' : 'ignore', 'pipe'],
      windowsHide: true,
    });
    const pid = child.pid;
    const finish = (r: RunOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
      src?.destroy();
      // Whatever the command left behind in its group goes too (proxsmtpd's orphaned-filter problem).
      killGroup(pid);
      void writeChain.then(() => resolve(r), () => resolve(r));
    };
    const onAbort = (): void => finish({ kind: 'error', message: 'aborted' });
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => finish({ kind: 'error', message: `filter timed out after ${options.timeoutMs} ms` }), timeoutMs);
    const maybeDone = (): void => {
      if (!exit || open > 0) return;
      if (outFailure) return finish({ kind: 'error', message: outFailure });
      if (exit.sig) return finish({ kind: 'error', message: `filter killed by ${exit.sig}` });
      finish({ kind: 'done', exitCode: exit.code ?? 1, stderr });
    };
    child.on('error', (err) => finish({ kind: 'error', message: `cannot run filter: ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
    child.on('exit', (code, sig) => {
      exit = { code, sig };
      if (open > 0) graceTimer = setTimeout(() => { open = 0; maybeDone(); }, EXIT_GRACE_MS);
      maybeDone();
    });
    if (child.stderr) {
      open++;
      child.stderr.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString('latin1')).slice(-STDERR_KEEP);
      });
      child.stderr.on('close', () => { open--; maybeDone(); });
    }
    if (child.stdout && out) {
      open++;
      child.stdout.on('data', (d: Buffer) => {
        outBytes += d.length;
        if (outBytes > options.maxOutputBytes * 2 + 65536) {
          outFailure = `filter output larger than ${options.maxOutputBytes} bytes`;
          killGroup(pid);
          return;
        }
        child.stdout?.pause();
        writeChain = writeChain.then(() => out.write(d)).then(
          () => child.stdout?.resume(),
          (err: Error) => { outFailure = `writing filter output failed: ${err.message}`; killGroup(pid); },
        );
      });
      child.stdout.on('close', () => { open--; void writeChain.then(maybeDone, maybeDone); });
    }
    if (child.stdin) {
      // A filter may exit without reading its input: EPIPE here is not an error.
      child.stdin.on('error', () => undefined);
      src = input.open();
      src.on('error', (err) => finish({ kind: 'error', message: `reading the spooled message failed: ${err.message}` }));
      src.pipe(child.stdin);
    }
  });
}
