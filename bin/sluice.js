#!/usr/bin/env node
// The `sluice` command: a thin launcher for the compiled CLI (npm run build writes dist/).
import('../dist/lib/cli/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`sluice: ${err && err.stack ? err.stack : err}\n`); process.exitCode = 1; },
);
