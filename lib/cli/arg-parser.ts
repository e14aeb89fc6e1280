/**
 * A small command-line parser (no dependency): long options (`--config FILE`, `--config=FILE`), short options
 * (`-c FILE`), flags, repeatable options, `--` to end options. Errors are precise and name the command:
 * "sluice locks add: missing KEY".
 */
import { nearest } from '../core/edit-distance.js';

export interface OptionSpec {
  /** Long name without dashes: "config". */
  readonly name: string;
  /** One-letter alias without the dash: "c". */
  readonly short?: string;
  /** Name of the value in messages ("FILE"); absent for flags. */
  readonly value?: string;
  readonly repeatable?: boolean;
}

export interface ParsedArgs {
  /** Flag → true, valued option → last value. */
  readonly options: ReadonlyMap<string, string | true>;
  /** Every value of repeatable options, in order. */
  readonly lists: ReadonlyMap<string, readonly string[]>;
  readonly positionals: readonly string[];
}

/** A wrong command line; the CLI prints it with a pointer to --help and exits 64. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    /** "sluice locks add" */
    readonly command: string,
    readonly detail: string,
  ) {
    super(`${command}: ${detail}`);
  }
}

export function parseArgs(command: string, args: readonly string[], spec: readonly OptionSpec[]): ParsedArgs {
  const options = new Map<string, string | true>();
  const lists = new Map<string, string[]>();
  const positionals: string[] = [];
  const byLong = new Map(spec.map((s) => [s.name, s]));
  const byShort = new Map(spec.filter((s) => s.short).map((s) => [s.short as string, s]));
  let i = 0;
  while (i < args.length) {
    const arg = args[i] as string;
    i++;
    if (arg === '--') {
      positionals.push(...args.slice(i));
      break;
    }
    let opt: OptionSpec | undefined;
    let inline: string | undefined;
    let shown = arg;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      if (eq >= 0) inline = arg.slice(eq + 1);
      shown = `--${name}`;
      opt = byLong.get(name);
      if (!opt) throw new UsageError(command, `unknown option ${shown}${suggestOption(name, spec)}`);
    } else if (arg.startsWith('-') && arg.length > 1) {
      const letter = arg.slice(1, 2);
      if (arg.length > 2) inline = arg.slice(2);
      shown = `-${letter}`;
      opt = byShort.get(letter);
      if (!opt) throw new UsageError(command, `unknown option ${shown}`);
    } else {
      positionals.push(arg);
      continue;
    }
    let value: string | true = true;
    if (opt.value !== undefined) {
      if (inline !== undefined) value = inline;
      else {
        const next = args[i];
        if (next === undefined) throw new UsageError(command, `option ${shown} needs a value (${opt.value})`);
        value = next;
        i++;
      }
    } else if (inline !== undefined) {
      throw new UsageError(command, `option ${shown} takes no value`);
    }
    if (options.has(opt.name) && !opt.repeatable) throw new UsageError(command, `option ${shown} given more than once`);
    options.set(opt.name, value);
    if (typeof value === 'string') {
      const l = lists.get(opt.name) ?? [];
      l.push(value);
      lists.set(opt.name, l);
    }
  }
  return { options, lists, positionals };
}

/** The value of a valued option, or undefined. */
export function optionValue(parsed: ParsedArgs, name: string): string | undefined {
  const v = parsed.options.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** Takes the positionals a command expects by name; too few or too many is a usage error. */
export function takePositionals(command: string, parsed: ParsedArgs, names: readonly string[], optional: readonly string[] = []): Record<string, string | undefined> {
  const got = parsed.positionals;
  const out: Record<string, string | undefined> = {};
  names.forEach((n, idx) => {
    const v = got[idx];
    if (v === undefined) throw new UsageError(command, `missing ${n}`);
    out[n] = v;
  });
  optional.forEach((n, idx) => {
    out[n] = got[names.length + idx];
  });
  const max = names.length + optional.length;
  if (got.length > max) throw new UsageError(command, `unexpected argument "${got[max]}"`);
  return out;
}

/** True when --help or -h appears before any `--`. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

function suggestOption(name: string, spec: readonly OptionSpec[]): string {
  const best = nearest(name, spec.map((s) => s.name), { ignoreCase: false });
  return best !== undefined ? ` (did you mean --${best}?)` : '';
}

