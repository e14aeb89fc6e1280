/**
 * Plays a scenario through the stages in SMTP order (connect, helo, auth, mail, rcpt per recipient, data,
 * header per header, eoh, eom) with the shared transaction reducer, up to the first final verdict.
 * One function for embedded tests and `policy test --explain`.
 */
import type { DoorName, RuleStage, StageEvent } from '../core/stage.js';
import { acceptRecipient, reduceTransaction, startTransaction, type Transaction } from '../core/transaction.js';
import { CONTINUE, type Effect, type HeaderMutation, type RuleHit, type Verdict } from '../core/verdict.js';
import { parseIp } from './ip-match.js';
import type { PolicyEngine, RuleTrace } from './policy-engine.js';
import type { Scenario } from './rule-scenario-types.js';
import { scenarioScanResults, scenarioTime } from './fact-providers.js';
import { STAGE_INDEX } from './rule-fields.js';

/** What a scenario leaves out: documented in docs/rules.md. */
export const SCENARIO_DEFAULTS = {
  client: '192.0.2.1',
  clientPort: 40000,
  helo: 'client.example.test',
  sender: 'sender@example.test',
  recipient: 'rcpt@example.test',
} as const;

export interface StageRun {
  readonly stage: RuleStage;
  readonly considered: RuleTrace[];
  readonly verdict: Verdict;
}

export interface ScenarioRun {
  readonly stages: StageRun[];
  /** The final verdict, or a `continue` carrying every header, effect and hit of the stages run. */
  readonly final: Verdict;
  /** The stage that decided, when a rule did. */
  readonly decidedAt?: RuleStage;
}

function scenarioDoor(s: Scenario): DoorName {
  const d = s.facts?.['door'];
  return d === 'intercept' || d === 'milter' || d === 'filter' || d === 'policy' ? d : 'test';
}

function parseDestination(d: string): { ip: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(d) ?? /^([^:]+):(\d+)$/.exec(d);
  if (m) return { ip: m[1] as string, port: Number(m[2]) };
  return parseIp(d) ? { ip: d, port: 25 } : undefined;
}

export async function playScenario(engine: PolicyEngine, s: Scenario, opts: { explain?: boolean; upTo?: RuleStage } = {}): Promise<ScenarioRun> {
  const upTo = STAGE_INDEX[opts.upTo ?? 'eom'];
  const stages: StageRun[] = [];
  const mutations: HeaderMutation[] = [];
  const effects: Effect[] = [];
  const hits: RuleHit[] = [];
  const has = engine.ruleset.byStage;
  const now = scenarioTime(s);
  const dest = s.destination !== undefined ? parseDestination(s.destination) : undefined;
  let tx: Transaction = startTransaction(
    {
      stage: 'connect',
      door: scenarioDoor(s),
      earlytalker: s.facts?.['earlytalker'] === 'yes',
      client: { ip: s.client ?? SCENARIO_DEFAULTS.client, port: s.clientPort ?? SCENARIO_DEFAULTS.clientPort },
      clientName: s.clientName ?? 'unknown',
      ...(dest ? { destination: dest, destinationSource: 'fixed' as const } : {}),
    },
    'scenario',
    now,
  );

  /** Evaluates one stage; returns the final verdict if it decided. */
  const judge = async (stage: RuleStage): Promise<Verdict | undefined> => {
    if (!has.has(stage)) return undefined;
    let verdict: Verdict;
    let considered: RuleTrace[] = [];
    if (opts.explain) ({ verdict, considered } = await engine.explain(stage, tx));
    else verdict = await engine.evaluate(stage, tx);
    stages.push({ stage, considered, verdict });
    mutations.push(...verdict.mutations);
    effects.push(...verdict.effects);
    hits.push(...verdict.hits);
    return verdict.action === 'continue' ? undefined : verdict;
  };
  const step = async (stage: RuleStage, event?: StageEvent): Promise<Verdict | undefined> => {
    if (event) tx = reduceTransaction(tx, event);
    return judge(stage);
  };
  const done = (v: Verdict, stage: RuleStage): ScenarioRun => ({ stages, final: v, decidedAt: stage });
  const reached = (stage: RuleStage): boolean => STAGE_INDEX[stage] <= upTo;

  let v = await step('connect');
  if (v) return done(v, 'connect');
  if (s.tls) tx = reduceTransaction(tx, { stage: 'tls', active: true, protocol: 'TLSv1.3' });
  const rest: [RuleStage, () => StageEvent | undefined][] = [];
  rest.push(['helo', () => ({ stage: 'helo', name: s.helo ?? SCENARIO_DEFAULTS.helo, extended: true })]);
  if (s.auth !== undefined) rest.push(['auth', () => ({ stage: 'auth', user: s.auth as string, mechanism: 'PLAIN' })]);
  const params: Record<string, string> = s.declaredSize !== undefined ? { SIZE: String(s.declaredSize) } : {};
  rest.push(['mail', () => ({ stage: 'mail', address: s.sender ?? SCENARIO_DEFAULTS.sender, params })]);
  for (const [stage, ev] of rest) {
    if (!reached(stage)) return { stages, final: aggregate(mutations, effects, hits) };
    v = await step(stage, ev());
    if (v) return done(v, stage);
  }
  if (!reached('rcpt')) return { stages, final: aggregate(mutations, effects, hits) };
  for (const r of s.recipients ?? [SCENARIO_DEFAULTS.recipient]) {
    v = await step('rcpt', { stage: 'rcpt', address: r });
    if (v) return done(v, 'rcpt');
    tx = acceptRecipient(tx);
  }
  if (!reached('data')) return { stages, final: aggregate(mutations, effects, hits) };
  v = await step('data', { stage: 'data' });
  if (v) return done(v, 'data');
  let bytes = 2;
  for (const [name, value] of s.headers ?? []) {
    if (!reached('header')) break;
    bytes += name.length + 2 + value.length + 2;
    v = await step('header', { stage: 'header', name, value });
    if (v) return done(v, 'header');
  }
  if (!reached('eoh')) return { stages, final: aggregate(mutations, effects, hits) };
  v = await step('eoh', { stage: 'eoh' });
  if (v) return done(v, 'eoh');
  if (!reached('eom')) return { stages, final: aggregate(mutations, effects, hits) };
  const scan = scenarioScanResults(s);
  if (scan) tx = reduceTransaction(tx, { stage: 'scan', results: scan });
  v = await step('eom', { stage: 'eom', size: s.size ?? bytes });
  if (v) return done(v, 'eom');
  return { stages, final: aggregate(mutations, effects, hits) };
}

function aggregate(mutations: HeaderMutation[], effects: Effect[], hits: RuleHit[]): Verdict {
  if (mutations.length === 0 && effects.length === 0 && hits.length === 0) return CONTINUE;
  return { action: 'continue', mutations, effects, hits };
}

