import type { CliIO } from './cli-io.js';

export const help = `Usage: sluice run -c CONFIG

(being written)
`;

export async function run(_args: string[], io: CliIO): Promise<number> {
  io.stderr('sluice run: not implemented yet\n');
  return 1;
}
