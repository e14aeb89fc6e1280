/**
 * Loaded by mocha before every run (.mocharc.json "require").
 * A suite that cannot find a real peer may skip on a developer's machine, but never under CI=true:
 * there a missing peer is a failure, so a skipped suite can never report green.
 */
import type { Context } from 'mocha';

export const inCI = process.env['CI'] === 'true';

/** Call from a before() hook: skips locally, throws in CI. */
export function requirePeer(ctx: Context, available: boolean, what: string): void {
  if (available) return;
  if (inCI) throw new Error(`required test peer missing in CI: ${what}`);
  // eslint-disable-next-line no-console
  console.warn(`  (skipping: ${what} not available; CI=true would fail here)`);
  ctx.skip();
}

export const mochaHooks = {
  afterAll(this: Context): void {
    /* placeholder so mocha accepts this file as a root-hook plugin */
  },
};
