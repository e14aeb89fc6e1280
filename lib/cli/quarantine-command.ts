// STUB written by the daemon engineer so the CLI builds; owned by "scanners", who replaces this file.
import type { CliIO } from './cli-io.js';

export const help = `Usage: sluice quarantine ...

(not implemented yet)
`;

export async function run(_args: string[], io: CliIO): Promise<number> {
  io.stderr('sluice quarantine: not implemented yet\n');
  return 1;
}
