/**
 * Builds the policy engine from the configured rule files: compile everything first (all diagnostics at once),
 * then the engine with its providers.
 */
import { CONTINUE, type Verdict } from '../core/verdict.js';
import type { Logger } from '../core/logger.js';
import type { PolicyNeeds, PolicyPort } from '../core/policy-port.js';
import type { RuleStage } from '../core/stage.js';
import type { Transaction } from '../core/transaction.js';
import type { PolicyProviders, SpfProvider } from '../policy/providers.js';
import { compileRuleFiles, PolicyEngine } from '../policy/index.js';
import type { VerdictHeadersConfig } from './config-types.js';

/** A policy that decides nothing (no rules): every stage continues. */
export const EMPTY_POLICY: PolicyPort = {
  evaluate: async (): Promise<Verdict> => CONTINUE,
  needs: { stages: new Set(), headers: false, scan: false, spf: false, dnsLists: new Set() } satisfies PolicyNeeds,
};

export interface LoadedPolicy {
  readonly policy: PolicyPort;
  /** Rule files compiled. */
  readonly files: readonly string[];
  /** Rules compiled. */
  readonly rules: number;
  /** Releases what the engine holds (timers); the daemon calls it once no session uses the policy any more. */
  close?(): void;
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
  /** spf.skip_authenticated: authenticated sessions get SPF "none" without a lookup. */
  readonly skipSpfWhenAuthenticated?: boolean;
  /** scanners.verdict_headers. */
  readonly verdictHeaders?: false | VerdictHeadersConfig;
}

/** What authenticated sessions see for SPF when spf.skip_authenticated is on. */
export const SKIPPED_SPF: SpfProvider = {
  check: async () => ({ result: 'none', identity: 'mailfrom', explanation: 'authenticated session; SPF not checked (spf.skip_authenticated)' }),
};

/** Two engines over one ruleset: authenticated sessions go to the one whose SPF provider answers "none". */
function routeByAuth(unauthenticated: PolicyPort, authenticated: PolicyPort): PolicyPort {
  return {
    needs: unauthenticated.needs,
    evaluate: (stage: RuleStage, tx: Transaction) => (tx.session.auth ? authenticated : unauthenticated).evaluate(stage, tx),
  };
}

/**
 * Compiles the rules (throws DiagnosticsError with every problem) and, given an engine context, builds the
 * engine. Without one (sluice check) it only compiles.
 */
export async function loadPolicy(ruleFiles: readonly string[], names: RuleContext, engine?: EngineContext): Promise<LoadedPolicy> {
  const ruleset = await compileRuleFiles(ruleFiles, { dnsLists: names.dnsLists, hooks: names.hooks });
  let policy: PolicyPort = EMPTY_POLICY;
  if (engine) {
    const opts = { logger: engine.logger, proxyName: engine.hostname, ...(engine.verdictHeaders ? { verdictHeaders: engine.verdictHeaders } : {}) };
    policy = new PolicyEngine(ruleset, engine.providers, opts);
    if (engine.skipSpfWhenAuthenticated && engine.providers.spf && ruleset.needs.spf) {
      policy = routeByAuth(policy, new PolicyEngine(ruleset, { ...engine.providers, spf: SKIPPED_SPF }, opts));
    }
  }
  return { policy, files: ruleset.files, rules: ruleset.rules.length };
}

export function ruleContext(config: { readonly dnsLists: readonly { readonly name: string }[]; readonly hooks: Readonly<Record<string, unknown>> }): RuleContext {
  return { dnsLists: new Set(config.dnsLists.map((l) => l.name)), hooks: new Set(Object.keys(config.hooks)) };
}
