import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The directory holding package.json (the repo), found from this compiled file's location. */
export const repoRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
})();

/** The build output root this spec was compiled into (dist/ or .build/NAME/). */
export const buildRoot: string = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The compiled CLI entry point of this build (a process entry: run it with node). */
export const cliMain: string = join(buildRoot, 'lib', 'cli', 'sluice.js');

export const fixturesDir: string = join(repoRoot, 'spec', 'fixtures');
