// STUB written by the daemon engineer so the CLI builds; owned by "lead", who replaces this file.
import type { CliIO } from './cli-io.js';

export const help = `Usage: sluice policy test ...

(not implemented yet)
`;

export async function run(_args: string[], io: CliIO): Promise<number> {
  io.stderr('sluice policy test: not implemented yet\n');
  return 1;
}
