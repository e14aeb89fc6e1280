/**
 * Finds and loads sluice's own N-API addon (native/, built by `npm install` with node-gyp): the socket options
 * Node lacks (lib/intercept/native-sockopt.ts) and the DATA framer's fast path (lib/smtp/data-scan.ts).
 * SLUICE_NATIVE names the .node file explicitly; otherwise native/build/Release/ is looked for upwards from here.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Candidate locations: the repo's native/ seen from lib/core in dist/, .build/NAME/ or a source checkout. */
function candidates(): string[] {
  const out: string[] = [];
  const env = process.env['SLUICE_NATIVE'];
  if (env) out.push(env);
  let dir = here;
  for (let i = 0; i < 6; i++) {
    out.push(join(dir, 'native', 'build', 'Release', 'sluice_sockopt.node'));
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return out;
}

let cached: Record<string, unknown> | undefined;
let loadError: string | undefined;

/** The addon's exports, or undefined (then `nativeAddonError()` says why). Loaded once. */
export function loadNativeAddon(): Record<string, unknown> | undefined {
  if (cached) return cached;
  if (loadError !== undefined) return undefined;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const file of candidates()) {
    if (!existsSync(file)) {
      tried.push(file);
      continue;
    }
    try {
      cached = require(file) as Record<string, unknown>;
      return cached;
    } catch (err) {
      loadError = `cannot load ${file}: ${(err as Error).message}`;
      return undefined;
    }
  }
  loadError = `native helper not built (looked for ${tried[0] ?? 'native/build/Release/sluice_sockopt.node'} and parents); run "npx node-gyp rebuild -C native"`;
  return undefined;
}

/** Why the addon could not be loaded (undefined when it was, or was not tried yet). */
export function nativeAddonError(): string | undefined {
  return loadError;
}
