/**
 * Builds the policy engine from the configured rule files: compile everything first (all diagnostics at once),
 * then the engine with its providers. Until the rule compiler (lib/policy/index.ts) is part of the build, a
 * configuration without rules runs with a policy that continues at every stage.
 */
import { CONTINUE, type Verdict } from '../core/verdict.js';
import { DiagnosticsError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
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
  compileRuleFiles(paths: readonly string[], options?: { dnsLists?: ReadonlySet<string>; hooks?: ReadonlySet<string> }): Promise<unknown>;
  PolicyEngine: new (ruleset: never, providers: PolicyProviders, options?: { logger?: Logger; proxyName?: string }) => PolicyPort;
}

/** What the rules may refer to, from the configuration (unknown names are compile errors). */
export interface RuleContext {
  readonly dnsLists: ReadonlySet<string>;
  readonly hooks: ReadonlySet<string>;
}

/** The engine's runtime settings. */
export interface EngineContext {
  readonly providers: PolicyProviders;
  readonly logger: Logger;
  readonly hostname: string;
}

/**
 * Compiles the rules (throws DiagnosticsError with every problem) and, given an engine context, builds the
 * engine. Without one (sluice check) it only compiles.
 */
export async function loadPolicy(ruleFiles: readonly string[], names: RuleContext, engine?: EngineContext): Promise<LoadedPolicy> {
  const mod = await optionalModule<PolicyModule>('../policy/index.js');
  if (!mod) {
    if (ruleFiles.length === 0) return { policy: EMPTY_POLICY, files: [] };
    throw new DiagnosticsError([{ code: 'rules/unavailable', message: 'the rule compiler is not part of this build (lib/policy/index.js is missing)', hint: 'remove `rules` from the configuration to run without rules' }]);
  }
  const ruleset = await mod.compileRuleFiles(ruleFiles, { dnsLists: names.dnsLists, hooks: names.hooks });
  const rs = ruleset as { files?: readonly string[]; rules?: readonly unknown[] };
  const policy = engine ? new mod.PolicyEngine(ruleset as never, engine.providers, { logger: engine.logger, proxyName: engine.hostname }) : EMPTY_POLICY;
  return { policy, files: rs.files ?? ruleFiles, ...(Array.isArray(rs.rules) ? { rules: rs.rules.length } : {}) };
}

export function ruleContext(config: { readonly dnsLists: readonly { readonly name: string }[]; readonly hooks: Readonly<Record<string, unknown>> }): RuleContext {
  return { dnsLists: new Set(config.dnsLists.map((l) => l.name)), hooks: new Set(Object.keys(config.hooks)) };
}
