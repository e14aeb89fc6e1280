/** What a CLI command may touch: output streams, the working directory and the environment. Injected for tests. */
export interface CliIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

/** The shape of every subcommand module (lib/cli/*-command.ts). */
export interface CliCommand {
  /** Complete usage text, printed for `--help`. */
  readonly help: string;
  run(args: string[], io: CliIO): Promise<number>;
}

/** Exit codes shared by all commands. */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  /** `sluice policy test`: a test failed. */
  TEST_FAILURE: 2,
  /** BSD sysexits EX_USAGE: the command line was wrong. */
  USAGE: 64,
} as const;

/** The process's own streams, for bin/sluice.js. */
export function processIO(): CliIO {
  return {
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    cwd: process.cwd(),
    env: process.env,
  };
}
