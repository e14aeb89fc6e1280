/**
 * `sluice policy test`: runs the tests embedded in rule files, or evaluates one ad-hoc transaction with --explain.
 * No mail flows: the same evaluator as the daemon, with facts from the test or the command line.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import RE2 from 're2';
import { DiagnosticsError } from '../core/errors.js';
import { compileRuleFiles, explainScenario, runRuleTests, type Scenario } from '../policy/index.js';
import { describeVerdict, formatExplainText, formatTestJson, formatTestJunit, formatTestText } from '../policy/test-report.js';
import { optionValue, parseArgs, UsageError, type OptionSpec, type ParsedArgs } from './arg-parser.js';
import { EXIT, type CliIO } from './cli-io.js';

export const help = `Usage: sluice policy test RULES... [OPTIONS]
       sluice policy test RULES... --client IP [SCENARIO OPTIONS] --explain

Runs the test blocks embedded in rule files (RULES: files or directories of *.rules files), or evaluates one
transaction given on the command line and shows every rule considered at each stage. No mail flows.

Test options:
      --format FORMAT     text (default), json or junit
  -o, --output FILE       write the report to FILE instead of standard output
      --run PATTERN       only tests whose name matches PATTERN (an RE2 regular expression)
      --coverage          also list the rules no test reached
  -v, --verbose           show passing tests' verdicts too

Scenario options (with --explain, or alone to print just the verdict):
      --client IP         client address (required for a scenario)
      --client-port PORT  client port (default 25000)
      --client-name NAME  client's reverse-DNS name (default "unknown")
      --helo NAME         HELO/EHLO name
      --auth USER         the session authenticated as USER
      --tls               the session is encrypted
      --mail ADDRESS      envelope sender ("" for the null sender <>)
      --rcpt ADDRESS      a recipient (repeat for several)
      --header "N: V"     a message header (repeat)
      --size BYTES        message size
      --fact NAME=VALUE   a fact a provider would give (repeat): spf=fail, dnsbl.zen=127.0.0.2,
                          virus=Eicar-Test-Signature, spam.score=7.5, filter.code=550
      --lock KEY=REASON   an existing lock (repeat): client:192.0.2.7=REGEX_HELO
      --explain           print every rule considered at each stage, matched or not

Exit codes: 0 all tests passed (or the scenario ran), 2 a test failed, 1 error (e.g. a rule file does not
compile: every error is listed with file:line:col), 64 usage error.
`;

const OPTIONS: readonly OptionSpec[] = [
  { name: 'format', value: 'FORMAT' },
  { name: 'output', short: 'o', value: 'FILE' },
  { name: 'run', value: 'PATTERN' },
  { name: 'coverage' },
  { name: 'verbose', short: 'v' },
  { name: 'client', value: 'IP' },
  { name: 'client-port', value: 'PORT' },
  { name: 'client-name', value: 'NAME' },
  { name: 'helo', value: 'NAME' },
  { name: 'auth', value: 'USER' },
  { name: 'tls' },
  { name: 'mail', value: 'ADDRESS' },
  { name: 'rcpt', value: 'ADDRESS', repeatable: true },
  { name: 'header', value: 'HEADER', repeatable: true },
  { name: 'size', value: 'BYTES' },
  { name: 'fact', value: 'NAME=VALUE', repeatable: true },
  { name: 'lock', value: 'KEY=REASON', repeatable: true },
  { name: 'explain' },
];

const CMD = 'sluice policy test';
const SCENARIO_OPTIONS = ['client', 'client-port', 'client-name', 'helo', 'auth', 'tls', 'mail', 'rcpt', 'header', 'size', 'fact', 'lock', 'explain'];

function pairs(parsed: ParsedArgs, name: string, sep: string, what: string): Array<[string, string]> {
  return (parsed.lists.get(name) ?? []).map((item) => {
    const at = item.indexOf(sep);
    if (at <= 0) throw new UsageError(CMD, `--${name} "${item}" is not of the form ${what}`);
    return [item.slice(0, at).trim(), item.slice(at + sep.length).trim()];
  });
}

function buildScenario(parsed: ParsedArgs): Scenario {
  const client = optionValue(parsed, 'client');
  if (client === undefined) throw new UsageError(CMD, 'a scenario needs --client IP');
  const port = optionValue(parsed, 'client-port');
  const size = optionValue(parsed, 'size');
  if (port !== undefined && !/^\d{1,5}$/.test(port)) throw new UsageError(CMD, `--client-port "${port}" is not a port number`);
  if (size !== undefined && !/^\d{1,15}$/.test(size)) throw new UsageError(CMD, `--size "${size}" is not a number of bytes`);
  const scenario: Scenario = {
    client,
    ...(port !== undefined ? { clientPort: Number(port) } : {}),
    ...(optionValue(parsed, 'client-name') !== undefined ? { clientName: optionValue(parsed, 'client-name') as string } : {}),
    ...(optionValue(parsed, 'helo') !== undefined ? { helo: optionValue(parsed, 'helo') as string } : {}),
    ...(optionValue(parsed, 'auth') !== undefined ? { auth: optionValue(parsed, 'auth') as string } : {}),
    ...(parsed.options.has('tls') ? { tls: true } : {}),
    ...(optionValue(parsed, 'mail') !== undefined ? { sender: optionValue(parsed, 'mail') as string } : {}),
    recipients: [...(parsed.lists.get('rcpt') ?? [])],
    headers: pairs(parsed, 'header', ':', '"Name: value"'),
    ...(size !== undefined ? { size: Number(size) } : {}),
    facts: Object.fromEntries(pairs(parsed, 'fact', '=', 'NAME=VALUE')),
    locks: pairs(parsed, 'lock', '=', 'KEY=REASON').map(([key, reason]) => ({ key, reason })),
  };
  return scenario;
}

export async function run(args: string[], io: CliIO): Promise<number> {
  const parsed = parseArgs(CMD, args, OPTIONS);
  // Paths stay as the user typed them (so reports name them that way) unless the command runs elsewhere.
  const paths = parsed.positionals.map((p) => (io.cwd === process.cwd() ? p : resolve(io.cwd, p)));
  if (paths.length === 0) throw new UsageError(CMD, 'missing RULES (a rule file or a directory of *.rules files)');
  const format = optionValue(parsed, 'format') ?? 'text';
  if (!['text', 'json', 'junit'].includes(format)) throw new UsageError(CMD, `--format must be text, json or junit, not "${format}"`);
  const isScenario = SCENARIO_OPTIONS.some((o) => parsed.options.has(o));
  const pattern = optionValue(parsed, 'run');
  let filter: ((name: string) => boolean) | undefined;
  if (pattern !== undefined) {
    try {
      const re = new RE2(pattern);
      filter = (name) => re.test(name);
    } catch (err) {
      throw new UsageError(CMD, `--run "${pattern}" is not a valid regular expression: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (isScenario && (pattern !== undefined || parsed.options.has('coverage') || format === 'junit')) {
    throw new UsageError(CMD, '--run, --coverage and --format junit apply to embedded tests, not to a --client scenario');
  }

  let ruleset;
  try {
    ruleset = await compileRuleFiles(paths);
  } catch (err) {
    if (err instanceof DiagnosticsError) {
      io.stderr(`${err.message}\n${err.diagnostics.length} error${err.diagnostics.length === 1 ? '' : 's'}; nothing was run\n`);
      return EXIT.ERROR;
    }
    throw err;
  }

  const emit = (text: string): void => {
    const output = optionValue(parsed, 'output');
    if (output === undefined) io.stdout(text);
    else writeFileSync(resolve(io.cwd, output), text);
  };

  if (isScenario) {
    const explained = await explainScenario(ruleset, buildScenario(parsed));
    if (format === 'json') emit(JSON.stringify(explained, null, 2) + '\n');
    else if (parsed.options.has('explain')) emit(formatExplainText(explained));
    else emit(`verdict: ${describeVerdict(explained.final)}\n`);
    return EXIT.OK;
  }

  const { results, coverage } = await runRuleTests(ruleset, filter ? { filter } : {});
  const withCoverage = parsed.options.has('coverage') ? coverage : undefined;
  if (format === 'json') emit(formatTestJson(results, withCoverage));
  else if (format === 'junit') emit(formatTestJunit(results));
  else emit(formatTestText(results, withCoverage, parsed.options.has('verbose')));
  if (results.length === 0) io.stderr(`${CMD}: no tests${pattern !== undefined ? ` match "${pattern}"` : ' found'}\n`);
  return results.some((r) => !r.passed) ? EXIT.TEST_FAILURE : EXIT.OK;
}
