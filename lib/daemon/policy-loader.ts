/**
 * Builds the policy engine from the configured rule files: compile everything first (all diagnostics at once),
 * then the engine with its providers. Until the rule compiler (lib/policy/index.ts) is part of the build, a
 * configuration without rules runs with a policy that continues at every stage.
 */
import { CONTINUE, type Verdict } from '../core/verdict.js';
import { DiagnosticsError } from '../core/errors.js';
import type { PolicyNeeds, PolicyPort } from '../core/policy-port.js';
import type { PolicyProviders } from '../policy/providers.js';
import { optionalModule } from './optional-module.js';

/** A policy that decides nothing (no rules): every stage continues. */
export const EMPTY_POLICY: PolicyPort = {
  evaluate: async (): Promise<Verdict> => CONTINUE,
  needs: { stages: new Set(), headers: false, scan: false, spf: false, dnsLists: new Set() } satisfies PolicyNeeds,
};

export interface LoadedPolicy {
  readonly policy: PolicyPort;
  /** Rule files compiled. */
  readonly files: readonly string[];
  /** Rules compiled (when the compiler tells). */
  readonly rules?: number;
  /** Releases what the engine holds (timers); the daemon calls it once no session uses the policy any more. */
  close?(): void;
}

/** The shape of lib/policy/index.ts that the daemon uses (owned by the dsl engineer). */
interface PolicyModule {
  compileRuleFiles(paths: readonly string[], options?: { dnsLists?: ReadonlySet<string> }): Promise<unknown>;
  PolicyEngine: new (ruleset: never, providers: PolicyProviders) => PolicyPort;
}

/**
 * Compiles the rules (throws DiagnosticsError with every problem) and, given providers, builds the engine.
 * Without providers (sluice check) it only compiles. `dnsLists` are the list names the configuration defines,
 * so a rule naming another is a compile error.
 */
export async function loadPolicy(ruleFiles: readonly string[], dnsLists: ReadonlySet<string>, providers?: PolicyProviders): Promise<LoadedPolicy> {
  const mod = await optionalModule<PolicyModule>('../policy/index.js');
  if (!mod) {
    if (ruleFiles.length === 0) return { policy: EMPTY_POLICY, files: [] };
    throw new DiagnosticsError([{ code: 'rules/unavailable', message: 'the rule compiler is not part of this build (lib/policy/index.js is missing)', hint: 'remove `rules` from the configuration to run without rules' }]);
  }
  const ruleset = await mod.compileRuleFiles(ruleFiles, { dnsLists });
  const rs = ruleset as { files?: readonly string[]; rules?: readonly unknown[] };
  const policy = providers ? new mod.PolicyEngine(ruleset as never, providers) : EMPTY_POLICY;
  return { policy, files: rs.files ?? ruleFiles, ...(Array.isArray(rs.rules) ? { rules: rs.rules.length } : {}) };
}
