/**
 * swaks as a real SMTP client for tests: runs it with argv (never a shell) and returns its transcript.
 * Exit codes (swaks(1)): 0 ok, 2 connection error, 23 error after EHLO/HELO, 24 MAIL, 25 RCPT (all rejected),
 * 26 DATA, 27 (this and others) end-of-data or later; 21/22 banner/greeting problems.
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from './temp-dir.js';

export const SWAKS = '/usr/bin/swaks';
export const swaksAvailable: boolean = existsSync(SWAKS);

export interface SwaksOptions {
  readonly server: string;
  readonly port: number;
  readonly from?: string;
  /** One or more recipients (sent as one comma list). */
  readonly to?: string | readonly string[];
  readonly helo?: string;
  /** Headers as [name, value]: replaces swaks' own header of that name (Subject, ...) or adds it. */
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly body?: string;
  /** A full message (headers + body) to send instead of swaks' default. */
  readonly data?: string;
  readonly quitAfter?: string;
  readonly timeoutSec?: number;
  /** Anything else, appended verbatim as argv. */
  readonly extra?: readonly string[];
}

export interface SwaksResult {
  readonly code: number;
  /** swaks' full transcript (stdout + stderr). */
  readonly transcript: string;
  /** Lines the server sent ("<-" / "<**" prefixed lines), without the prefix. */
  readonly serverLines: readonly string[];
}

/** Long texts do not fit in argv: swaks reads "@path" from a file (removed at exit of the test process). */
function viaFile(text: string): string {
  if (text.length < 4096 && !text.startsWith('@')) return text;
  const dir = (spoolDir ??= makeTempDir('sluice-swaks-'));
  const file = join(dir.path, `body-${++fileCounter}.txt`);
  writeFileSync(file, text);
  return `@${file}`;
}
let spoolDir: ReturnType<typeof makeTempDir> | undefined;
let fileCounter = 0;
process.once('exit', () => spoolDir?.remove());

export function swaksArgs(o: SwaksOptions): string[] {
  const args = ['--server', `${o.server}:${o.port}`, '--from', o.from ?? 'sender@example.org'];
  const to = o.to ?? 'rcpt@example.net';
  args.push('--to', typeof to === 'string' ? to : to.join(','));
  if (o.helo) args.push('--ehlo', o.helo);
  for (const [name, value] of o.headers ?? []) args.push('--header', `${name}: ${value}`);
  if (o.data !== undefined) args.push('--data', viaFile(o.data));
  else if (o.body !== undefined) args.push('--body', viaFile(o.body));
  if (o.quitAfter) args.push('--quit-after', o.quitAfter);
  args.push('--timeout', String(o.timeoutSec ?? 15), '--hide-informational');
  args.push(...(o.extra ?? []));
  return args;
}

export async function swaks(o: SwaksOptions): Promise<SwaksResult> {
  const args = swaksArgs(o);
  return await new Promise((resolve) => {
    execFile(SWAKS, args, { timeout: ((o.timeoutSec ?? 15) + 10) * 1000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const transcript = String(stdout) + String(stderr);
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      const serverLines = transcript
        .split('\n')
        .filter((l) => /^\s*<(\*\*|-)\s/.test(l))
        .map((l) => l.replace(/^\s*<(\*\*|-)\s+/, ''));
      resolve({ code, transcript, serverLines });
    });
  });
}
