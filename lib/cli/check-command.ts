/** `sluice check`: validates a configuration and every rule file it names, printing all problems at once. */
import { DiagnosticsError, formatDiagnostic, type Diagnostic } from '../core/errors.js';
import { loadConfig } from '../daemon/config-loader.js';
import { builtinDoors } from '../daemon/door-wiring.js';
import { planDoors } from '../daemon/door-registry.js';
import { loadPolicy, ruleContext } from '../daemon/policy-loader.js';
import { optionValue, parseArgs, takePositionals, type OptionSpec } from './arg-parser.js';
import { EXIT, type CliIO } from './cli-io.js';

export const help = `Usage: sluice check [-c CONFIG] [--quiet]

Validates the configuration file and compiles every rule file it names, without binding any port or opening
any store. Prints every problem with its file:line:col, then exits 1; when all is well prints a one-line
summary and exits 0.

Options:
  -c, --config FILE   the configuration (default: conf/sluice.yaml)
  -q, --quiet         print nothing when the configuration is valid
      --print         print the effective configuration (every default filled in, paths absolute,
                      durations in ms, sizes in bytes) as JSON instead of the summary
  -h, --help          this help

Exit codes: 0 valid, 1 problems found, 64 usage error.
`;

const OPTIONS: readonly OptionSpec[] = [{ name: 'config', short: 'c', value: 'FILE' }, { name: 'quiet', short: 'q' }, { name: 'print' }];

export async function run(args: string[], io: CliIO): Promise<number> {
  const parsed = parseArgs('sluice check', args, OPTIONS);
  takePositionals('sluice check', parsed, []);
  const file = optionValue(parsed, 'config') ?? 'conf/sluice.yaml';
  const diagnostics: Diagnostic[] = [];
  let summary = '';
  let effective = '';
  try {
    const config = await loadConfig(file, io.cwd);
    effective = JSON.stringify(config, null, 2) + '\n';
    const registry = builtinDoors();
    const plans = planDoors(config);
    for (const p of plans) {
      if (!registry.has(p.kind)) diagnostics.push({ code: 'config/door-unavailable', message: `${p.kind}: the ${p.kind} door is not available in this build`, location: { file: config.file, line: 1, column: 1 } });
    }
    try {
      const policy = await loadPolicy(config.rules, ruleContext(config));
      const rules = policy.rules !== undefined ? `, ${policy.rules} rule${policy.rules === 1 ? '' : 's'}` : '';
      const workers = (p: (typeof plans)[number]): string => {
        const n = p.kind === 'intercept' ? (p.settings as { workers?: number }).workers ?? 1 : 1;
        return n > 1 ? `, ${n} workers` : '';
      };
      const doors = plans.map((p) => `${p.kind === 'intercept' && p.name !== 'intercept' ? `intercept ${p.name}` : p.kind} on ${p.listen}${workers(p)}`).join(', ');
      summary = `${config.file}: ok: ${plans.length} door${plans.length === 1 ? '' : 's'} (${doors}); ${policy.files.length} rule file${policy.files.length === 1 ? '' : 's'}${rules}\n`;
    } catch (err) {
      if (!(err instanceof DiagnosticsError)) throw err;
      diagnostics.push(...err.diagnostics);
    }
  } catch (err) {
    if (!(err instanceof DiagnosticsError)) throw err;
    diagnostics.push(...err.diagnostics);
  }
  if (diagnostics.length > 0) {
    for (const d of diagnostics) io.stderr(formatDiagnostic(d) + '\n');
    io.stderr(`sluice check: ${diagnostics.length} problem${diagnostics.length === 1 ? '' : 's'} found\n`);
    return EXIT.ERROR;
  }
  if (parsed.options.has('print')) io.stdout(effective);
  else if (!parsed.options.has('quiet')) io.stdout(summary);
  return EXIT.OK;
}
