/**
 * Runs the `test` blocks of a ruleset with fact-backed providers (no network), and reports each result
 * and which rules no test ever fired (coverage).
 */
import RE2 from 're2';
import type { RuleStage } from '../core/stage.js';
import type { RuleHit, SourceLocation, Verdict } from '../core/verdict.js';
import { factProviders } from './fact-providers.js';
import { PolicyEngine, type RuleTrace } from './policy-engine.js';
import type { PolicyProviders } from './providers.js';
import type { CompiledRuleset } from './rule-compiler.js';
import { describeExpectation, type CompiledTest, type Scenario } from './rule-scenario-types.js';
import { playScenario, type ScenarioRun } from './rule-scenario.js';

export interface TestCaseResult {
  readonly name: string;
  readonly location: SourceLocation;
  readonly passed: boolean;
  readonly stage: RuleStage;
  /** e.g. "reject 550 5.7.1 at helo". */
  readonly expected: string;
  /** e.g. "reject 550 5.7.1 at helo (rule bad-helo)" or "continue through eom". */
  readonly actual: string;
  readonly failure?: string;
  readonly durationMs: number;
  readonly hits: RuleHit[];
}

export interface RuleCoverage {
  readonly rule: string;
  readonly location: SourceLocation;
  /** Fired in some test. */
  readonly reached: boolean;
}

export const TEST_PROXY_NAME = 'sluice.test';

export async function runRuleTests(ruleset: CompiledRuleset, opts: { filter?: (testName: string) => boolean } = {}): Promise<{ results: TestCaseResult[]; coverage: RuleCoverage[] }> {
  const results: TestCaseResult[] = [];
  const fired = new Set<string>();
  for (const t of ruleset.tests) {
    if (opts.filter && !opts.filter(t.name)) continue;
    const r = await runOne(ruleset, t);
    for (const h of r.hits) fired.add(h.rule);
    results.push(r);
  }
  const coverage = ruleset.rules.map((r) => ({ rule: r.name, location: r.location, reached: fired.has(r.name) }));
  return { results, coverage };
}

function describeActual(run: ScenarioRun, upTo: RuleStage): string {
  if (run.decidedAt === undefined) return `continue through ${upTo}`;
  const v = run.final;
  let s = v.action;
  if (v.reply) s += ` ${v.reply.code}${v.reply.enhanced ? ` ${v.reply.enhanced}` : ''} ${JSON.stringify(v.reply.lines.join(' '))}`;
  s += ` at ${run.decidedAt}`;
  const decider = v.hits[v.hits.length - 1];
  if (decider) s += ` (rule ${decider.rule})`;
  return s;
}

async function runOne(ruleset: CompiledRuleset, t: CompiledTest): Promise<TestCaseResult> {
  const started = performance.now();
  const e = t.expect;
  const expected = describeExpectation(e);
  let run: ScenarioRun;
  try {
    const engine = new PolicyEngine(ruleset, await factProviders(t.scenario), { proxyName: TEST_PROXY_NAME, providerTimeoutMs: 2000 });
    run = await playScenario(engine, t.scenario, { upTo: e.stage });
  } catch (err) {
    return { name: t.name, location: t.location, passed: false, stage: e.stage, expected, actual: 'error', failure: (err as Error).message, durationMs: performance.now() - started, hits: [] };
  }
  const actual = describeActual(run, e.stage);
  const hits = run.stages.flatMap((s) => [...s.verdict.hits]);
  const failures: string[] = [];
  const v = run.final;
  if (e.action === 'continue') {
    if (run.decidedAt !== undefined) failures.push(`expected no final verdict through ${e.stage}, but ${actual}`);
  } else if (run.decidedAt === undefined) {
    failures.push(`expected ${expected}, but no rule decided through ${e.stage}`);
  } else {
    if (run.decidedAt !== e.stage) failures.push(`expected the verdict at ${e.stage}, but it came at ${run.decidedAt}`);
    if (v.action !== e.action) failures.push(`expected ${e.action}, got ${v.action}`);
    if (e.code !== undefined && v.reply?.code !== e.code) failures.push(`expected code ${e.code}, got ${v.reply?.code ?? 'none'}`);
    if (e.enhanced !== undefined && v.reply?.enhanced !== e.enhanced) failures.push(`expected enhanced code ${e.enhanced}, got ${v.reply?.enhanced ?? 'none'}`);
    if (e.text !== undefined && !(v.reply?.lines.join('\n') ?? '').includes(e.text)) failures.push(`expected the reply text to contain ${JSON.stringify(e.text)}, got ${JSON.stringify(v.reply?.lines.join('\n') ?? '')}`);
  }
  const mutations = run.stages.flatMap((s) => [...s.verdict.mutations]);
  for (const h of e.headers) {
    const same = mutations.filter((m) => m.kind !== 'change' && m.name.toLowerCase() === h.name.toLowerCase());
    const ok = same.some((m) => (h.value !== undefined ? m.value === h.value : h.regex ? new RE2(h.regex.pattern, h.regex.flags).test(m.value) : true));
    if (!ok) failures.push(`expected header ${h.name}${h.value !== undefined ? ` ${JSON.stringify(h.value)}` : h.regex ? ` ~ /${h.regex.pattern}/${h.regex.flags}` : ''}, got ${same.length ? same.map((m) => JSON.stringify(m.value)).join(', ') : 'no such header'}`);
  }
  const tags = run.stages.flatMap((s) => s.verdict.effects.filter((x) => x.kind === 'tag').map((x) => (x as { tag: string }).tag));
  for (const tag of e.tags) if (!tags.includes(tag)) failures.push(`expected tag ${tag}, got ${tags.length ? tags.join(', ') : 'no tags'}`);
  return {
    name: t.name,
    location: t.location,
    passed: failures.length === 0,
    stage: e.stage,
    expected,
    actual,
    ...(failures.length ? { failure: failures.join('; ') } : {}),
    durationMs: performance.now() - started,
    hits,
  };
}

/** Runs an ad-hoc scenario with traces: every rule considered at every stage with rules, and why. */
export async function explainScenario(
  ruleset: CompiledRuleset,
  scenario: Scenario,
  opts: { providers?: PolicyProviders; proxyName?: string; upTo?: RuleStage } = {},
): Promise<{ stages: { stage: RuleStage; considered: RuleTrace[]; verdict: Verdict }[]; final: Verdict }> {
  const providers = opts.providers ?? (await factProviders(scenario));
  // With caller-supplied providers (a real lock store), explaining must not lock anyone.
  const engine = new PolicyEngine(ruleset, providers, { proxyName: opts.proxyName ?? TEST_PROXY_NAME, ...(opts.providers ? { dryRunLocks: true } : {}) });
  const run = await playScenario(engine, scenario, { explain: true, ...(opts.upTo ? { upTo: opts.upTo } : {}) });
  return { stages: run.stages, final: run.final };
}
