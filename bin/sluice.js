#!/usr/bin/env node
// The `sluice` command: a thin launcher for the compiled CLI (`npm run build` writes dist/).
import '../dist/lib/cli/sluice.js';
