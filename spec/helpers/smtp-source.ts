/** Postfix's smtp-source as a test client (Debian package postfix): its exit code and output, bounded in time. */
import { execFile } from 'node:child_process';

export function smtpSource(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('/usr/sbin/smtp-source', [...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? -1 : 0, out: String(stdout) + String(stderr) });
    });
  });
}
