import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A private temp directory (mode 0700) and a function that removes it. */
export function makeTempDir(prefix = 'sluice-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Returns a fresh "a@b" address with a random local part, for tests that need unique envelopes. */
export function uniqueAddress(domain = 'example.test'): string {
  return `t${Math.random().toString(36).slice(2, 10)}@${domain}`;
}
