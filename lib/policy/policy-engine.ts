/**
 * The policy engine: evaluates the rules bound to a stage, in file order; the first rule with a final
 * action (accept, reject, tempfail, discard, quarantine) decides, and the other actions of every rule that
 * fired before it (add header, lock, hook, tag) accumulate. Stages whose rules need no provider run
 * synchronously; provider facts are fetched on first use with a timeout, and failures are values the rules
 * can test. Nothing escapes `evaluate`: an unexpected error becomes a 451 4.3.0 tempfail and a log record.
 */
import type { Logger } from '../core/logger.js';
import { NULL_LOGGER } from '../core/logger.js';
import type { PolicyNeeds, PolicyPort } from '../core/policy-port.js';
import { GENERIC_TEMPFAIL, MAX_REPLY_TEXT, replyProblem, type SmtpReply } from '../core/smtp-reply.js';
import type { RuleStage } from '../core/stage.js';
import type { SessionFacts, Transaction } from '../core/transaction.js';
import { CONTINUE, type Effect, type HeaderMutation, type RuleHit, type SourceLocation, type Verdict, type VerdictAction } from '../core/verdict.js';
import { lockKey } from './lock-store.js';
import type { PolicyProviders } from './providers.js';
import { EvalContext, NeedFact, type FactKey, type FactValue } from './rule-context.js';
import type { CompiledRule, CompiledRuleset } from './rule-compiler.js';
import { renderTemplate } from './rule-template.js';
import { isValidHeaderName, verdictHeaders, type VerdictHeaderNames } from './verdict-headers.js';

export interface PolicyEngineOptions {
  readonly logger?: Logger;
  /** This host's name for {proxy.name} and the hook environment (smtp-gated's proxy_name). */
  readonly proxyName?: string;
  /** How long a provider (SPF, DNS list, lock store) may take before its answer counts as failed. */
  readonly providerTimeoutMs?: number;
  /** Overall budget for provider calls in one evaluation (default 3 × providerTimeoutMs); past it, facts count as failed. */
  readonly evaluationBudgetMs?: number;
  /** Do not write locks (for `policy test --explain` against a real lock store): a lock counts as new when none exists. */
  readonly dryRunLocks?: boolean;
  /**
   * Scanner verdict headers (X-Virus-Status, X-Spam-Status, X-Spam-Score) appended as `add` mutations to every eom
   * verdict that keeps the message (not reject, tempfail or discard). `true` uses the default names; an object
   * renames them or turns one off (`false`). Off by default. Turning it on makes `needs.stages` include eom.
   */
  readonly verdictHeaders?: boolean | VerdictHeaderNames;
}

/** One rule considered at a stage, matched or not, and why (for `policy test --explain`). */
export interface RuleTrace {
  readonly rule: string;
  readonly location: SourceLocation;
  readonly matched: boolean;
  readonly because: string;
  readonly action: VerdictAction;
}

const RESOLVED_CONTINUE: Promise<Verdict> = Promise.resolve(CONTINUE);
/** Provider fetches one evaluation may make (each rule needs a few at most). */
const MAX_FETCHES = 256;

/** What the rules that fired so far have added. Allocated on the first hit only. */
class Accumulator {
  mutations: HeaderMutation[] = [];
  effects: Effect[] = [];
  hits: RuleHit[] = [];
}

/** A fired rule's rendered outputs, built before anything is committed (rendering may need a fact). */
interface Firing {
  readonly rule: CompiledRule;
  readonly because: string;
  readonly reply?: SmtpReply;
  readonly reason?: string;
  readonly headers: HeaderMutation[];
  readonly lockReason?: string;
  readonly lockValue?: string;
}

export class PolicyEngine implements PolicyPort {
  readonly needs: PolicyNeeds;
  private readonly logger: Logger;
  private readonly proxyName: string;
  private readonly timeoutMs: number;
  private readonly budgetMs: number;
  private readonly dryRunLocks: boolean;
  private readonly verdictHeaderNames: VerdictHeaderNames | undefined;
  private readonly sessionFacts = new WeakMap<SessionFacts, Map<FactKey, FactValue>>();
  /** The last facts map per client endpoint object (shared by every SessionFacts of one session), with its session id. */
  private readonly factsByClient = new WeakMap<object, { id: string; map: Map<FactKey, FactValue> }>();

  constructor(
    readonly ruleset: CompiledRuleset,
    private readonly providers: PolicyProviders,
    opts: PolicyEngineOptions = {},
  ) {
    this.verdictHeaderNames = opts.verdictHeaders === true ? {} : opts.verdictHeaders === false ? undefined : opts.verdictHeaders;
    if (this.verdictHeaderNames) {
      for (const n of [this.verdictHeaderNames.virus, this.verdictHeaderNames.spamStatus, this.verdictHeaderNames.spamScore]) {
        if (typeof n === 'string' && !isValidHeaderName(n)) throw new Error(`verdict header name "${n}" is not a valid header field name`);
      }
    }
    this.needs = this.verdictHeaderNames && !ruleset.needs.stages.has('eom') ? { ...ruleset.needs, stages: new Set([...ruleset.needs.stages, 'eom']) } : ruleset.needs;
    this.logger = opts.logger ?? NULL_LOGGER;
    this.proxyName = opts.proxyName ?? 'sluice';
    this.timeoutMs = opts.providerTimeoutMs ?? 5000;
    this.budgetMs = opts.evaluationBudgetMs ?? 3 * this.timeoutMs;
    this.dryRunLocks = opts.dryRunLocks ?? false;
  }

  evaluate(stage: RuleStage, tx: Transaction): Promise<Verdict> {
    const v = this.evaluateRules(stage, tx);
    const names = this.verdictHeaderNames;
    if (stage !== 'eom' || names === undefined) return v;
    return v.then((verdict) => withVerdictHeaders(verdict, tx, names));
  }

  private evaluateRules(stage: RuleStage, tx: Transaction): Promise<Verdict> {
    const rules = this.ruleset.byStage.get(stage);
    if (rules === undefined) return RESOLVED_CONTINUE;
    try {
      const r = this.run(stage, tx, rules, undefined);
      if (r === CONTINUE) return RESOLVED_CONTINUE;
      return r instanceof Promise ? r.catch((e: unknown) => this.crash(e, stage, tx)) : Promise.resolve(r);
    } catch (e) {
      return Promise.resolve(this.crash(e, stage, tx));
    }
  }

  /** Every rule at the stage, matched or not, with why; rules after the deciding one are reported as not reached. */
  async explain(stage: RuleStage, tx: Transaction): Promise<{ verdict: Verdict; considered: RuleTrace[] }> {
    const rules = this.ruleset.byStage.get(stage) ?? [];
    const considered: RuleTrace[] = [];
    let verdict: Verdict;
    try {
      verdict = await this.run(stage, tx, rules, considered);
    } catch (e) {
      verdict = this.crash(e, stage, tx);
    }
    for (let i = considered.length; i < rules.length; i++) {
      const r = rules[i] as CompiledRule;
      considered.push({ rule: r.name, location: r.location, matched: false, because: 'not reached: an earlier rule decided', action: r.action });
    }
    return { verdict, considered };
  }

  private crash(e: unknown, stage: RuleStage, tx: Transaction): Verdict {
    try {
      this.logger.error({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e), stage, session: (tx as Partial<Transaction> | undefined)?.session?.id }, 'policy evaluation failed; answering tempfail');
    } catch {
      // A failing logger must not turn a tempfail into an exception.
    }
    return { action: 'tempfail', reply: GENERIC_TEMPFAIL, mutations: [], effects: [], hits: [] };
  }

  private readonly factsForBound = (s: SessionFacts): Map<FactKey, FactValue> => this.factsFor(s);

  private factsFor(session: SessionFacts): Map<FactKey, FactValue> {
    let m = this.sessionFacts.get(session);
    if (m === undefined) {
      // A new SessionFacts object of the same session (e.g. a recipient counted in rcptsTotal) keeps its
      // SPF/DNS answers: the facts are keyed by their query, so they stay right for the whole session.
      const prev = this.factsByClient.get(session.client);
      m = prev !== undefined && prev.id === session.id ? prev.map : new Map<FactKey, FactValue>();
      this.sessionFacts.set(session, m);
      this.factsByClient.set(session.client, { id: session.id, map: m });
    }
    return m;
  }

  private run(stage: RuleStage, tx: Transaction, rules: readonly CompiledRule[], trace: RuleTrace[] | undefined): Verdict | Promise<Verdict> {
    const ctx = new EvalContext(tx, stage, this.providers.clock, this.factsForBound, this.proxyName, this.providers);
    return this.loop(ctx, rules, 0, undefined, trace, 0);
  }

  /** Runs rules from `start`; returns synchronously unless a fact must be fetched or a lock set. */
  private loop(ctx: EvalContext, rules: readonly CompiledRule[], start: number, acc: Accumulator | undefined, trace: RuleTrace[] | undefined, fetches: number): Verdict | Promise<Verdict> {
    for (let i = start; i < rules.length; i++) {
      const rule = rules[i] as CompiledRule;
      let firing: Firing | undefined;
      try {
        const matched = rule.cond === undefined || rule.cond.test(ctx);
        if (trace && !matched) trace.push({ rule: rule.name, location: rule.location, matched: false, because: (rule.cond as { explain(c: EvalContext): string }).explain(ctx), action: rule.action });
        if (!matched) continue;
        firing = this.prepare(rule, ctx);
      } catch (e) {
        if (e instanceof NeedFact) {
          if (fetches >= MAX_FETCHES) throw new Error(`rule ${rule.name} needed more than ${MAX_FETCHES} provider facts`);
          return this.fetchAll(ctx, e, rule).then(() => this.loop(ctx, rules, i, acc, trace, fetches + 1));
        }
        throw e;
      }
      if (trace) trace.push({ rule: rule.name, location: rule.location, matched: true, because: firing.because, action: rule.action });
      const a = acc ?? new Accumulator();
      if (rule.lock !== undefined && firing.lockValue !== undefined) {
        const f = firing;
        return this.applyLock(ctx, f, a).then(() => (rule.action !== 'continue' ? this.verdict(a, f) : this.loop(ctx, rules, i + 1, a, trace, fetches)));
      }
      this.commit(ctx, firing, a, undefined);
      if (rule.action !== 'continue') return this.verdict(a, firing);
      acc = a;
    }
    if (acc === undefined) return CONTINUE;
    return { action: 'continue', mutations: acc.mutations, effects: acc.effects, hits: acc.hits };
  }

  private prepare(rule: CompiledRule, ctx: EvalContext): Firing {
    const because = rule.cond === undefined ? 'always' : rule.cond.explain(ctx);
    let reply: SmtpReply | undefined;
    if (rule.reply) {
      const text = renderTemplate(rule.reply.text, ctx, rule.name);
      const lines = text.split('\n').map((l) => (l.length > MAX_REPLY_TEXT ? l.slice(0, MAX_REPLY_TEXT) : l));
      const r: SmtpReply = { code: rule.reply.code, ...(rule.reply.enhanced !== undefined ? { enhanced: rule.reply.enhanced } : {}), lines };
      reply = replyProblem(r) === undefined ? r : GENERIC_TEMPFAIL;
    }
    const headers: HeaderMutation[] = [];
    for (const h of rule.headers) {
      const value = renderTemplate(h.value, ctx, rule.name);
      headers.push(h.first ? { kind: 'insert', name: h.name, value, index: 0 } : { kind: 'add', name: h.name, value });
    }
    for (const name of rule.removeHeaders) {
      // Every occurrence, last first, so the indexes stay right however the door applies them.
      const lower = name.toLowerCase();
      let n = 0;
      for (const [hn] of ctx.tx.message.headers) if (hn.toLowerCase() === lower) n++;
      for (let i = n; i >= 1; i--) headers.push({ kind: 'change', name, value: '', index: i });
    }
    let lockReason: string | undefined;
    let lockValue: string | undefined;
    if (rule.lock) {
      lockReason = renderTemplate(rule.lock.reason, ctx, rule.name);
      lockValue = rule.lock.subject === 'client' ? ctx.tx.session.client.ip : ctx.tx.session.auth?.user;
    }
    const reason = rule.quarantineReason ? renderTemplate(rule.quarantineReason, ctx, rule.name) : undefined;
    return {
      rule,
      because,
      headers,
      ...(reply ? { reply } : {}),
      ...(reason !== undefined ? { reason } : {}),
      ...(lockReason !== undefined ? { lockReason } : {}),
      ...(lockValue !== undefined ? { lockValue } : {}),
    };
  }

  /** `lock`: what happened to the rule's lock: new, already there (extended), or not set (allow-listed, store down). */
  private commit(ctx: EvalContext, f: Firing, acc: Accumulator, lock: 'created' | 'exists' | 'skipped' | undefined): void {
    const rule = f.rule;
    acc.hits.push({ rule: rule.name, stage: rule.stage, location: rule.location, action: rule.action, because: f.because });
    for (const h of f.headers) acc.mutations.push(h);
    for (const t of rule.tags) acc.effects.push({ kind: 'tag', tag: t, rule: rule.name });
    if (rule.lock && f.lockValue !== undefined && (lock === 'created' || lock === 'exists')) {
      acc.effects.push({ kind: 'lock', subject: rule.lock.subject, key: lockKey(rule.lock.subject, f.lockValue), durationMs: rule.lock.durationMs, reason: f.lockReason ?? '', rule: rule.name });
    }
    // With a lock, hooks run once per newly created lock (smtp-gated's action script); without, every time.
    const runHooks = rule.lock === undefined || lock === 'created';
    if (runHooks && rule.hooks.length > 0) {
      const env = hookEnv(ctx, f, this.proxyName);
      for (const hook of rule.hooks) acc.effects.push({ kind: 'hook', hook, rule: rule.name, env });
    }
  }

  private verdict(acc: Accumulator, f: Firing): Verdict {
    const action = f.rule.action;
    return {
      action,
      ...(f.reply ? { reply: f.reply } : {}),
      mutations: acc.mutations,
      effects: acc.effects,
      hits: acc.hits,
      ...(action === 'quarantine' && f.reason !== undefined ? { reason: f.reason } : {}),
    };
  }

  private async applyLock(ctx: EvalContext, f: Firing, acc: Accumulator): Promise<void> {
    const lock = f.rule.lock;
    if (!lock || f.lockValue === undefined) return;
    const key = lockKey(lock.subject, f.lockValue);
    let outcome: 'created' | 'exists' | 'skipped' = 'skipped';
    try {
      if (this.dryRunLocks) outcome = (await this.withTimeout(this.providers.locks.isLocked(key))) === undefined ? 'created' : 'exists';
      else {
        const r = await this.withTimeout(this.providers.locks.lock(key, lock.durationMs, f.lockReason ?? '', f.rule.name));
        outcome = r.created ? 'created' : r.allowListed ? 'skipped' : 'exists';
      }
    } catch (e) {
      this.logger.warn({ err: (e as Error).message, key, rule: f.rule.name, session: ctx.tx.session.id }, 'lock store failed; lock not set');
    }
    this.commit(ctx, f, acc, outcome);
  }

  /** Fetches the fact a rule asked for and, in parallel, every other fact its condition may read. */
  private async fetchAll(ctx: EvalContext, first: NeedFact, rule: CompiledRule): Promise<void> {
    const needs = new Map<FactKey, NeedFact>([[first.key, first]]);
    for (const read of rule.prefetch) {
      try {
        read(ctx);
      } catch (e) {
        if (e instanceof NeedFact) needs.set(e.key, e);
        // Anything else surfaces when the rule itself runs.
      }
    }
    ctx.fetchStarted ??= Date.now();
    await Promise.all([...needs.values()].map((n) => this.fetch(ctx, n)));
  }

  private async fetch(ctx: EvalContext, need: NeedFact): Promise<void> {
    let value: FactValue;
    try {
      const left = this.budgetMs - (Date.now() - (ctx.fetchStarted ?? Date.now()));
      if (left <= 0) throw new Error(`evaluation budget of ${this.budgetMs} ms spent`);
      value = await this.withTimeout(need.spec.fetch(this.providers), Math.min(this.timeoutMs, left));
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.logger.warn({ err: reason, fact: need.key.split('\u0000')[0], session: ctx.tx.session.id }, 'policy provider failed');
      value = need.spec.failed(reason);
    }
    ctx.store(need.key, value);
  }

  private withTimeout<T>(p: Promise<T>, ms = this.timeoutMs): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }
}

/** Appends the scanner verdict headers to an eom verdict that keeps the message. */
function withVerdictHeaders(v: Verdict, tx: Transaction, names: VerdictHeaderNames): Verdict {
  if (v.action === 'reject' || v.action === 'tempfail' || v.action === 'discard') return v;
  const headers = verdictHeaders(tx.message.scan, names);
  if (headers.length === 0) return v;
  return { ...v, mutations: [...v.mutations, ...headers] };
}

/** smtp-gated's action-script environment, plus sluice's own RULE, STAGE, LOCK_KEY, LOCK_REASON, AUTH_USER. */
function hookEnv(ctx: EvalContext, f: Firing, proxyName: string): Record<string, string> {
  const { session, envelope, message } = ctx.tx;
  const lock = f.rule.lock;
  const found = (f.lockReason ?? f.rule.tags[0] ?? f.rule.name).slice(0, 200);
  const env: Record<string, string> = {
    PROXY_NAME: proxyName,
    FOUND: found,
    RULE: f.rule.name,
    STAGE: ctx.stage,
    VIRUS_NAME: message.scan.virus?.name ?? '',
    SPAM_SCORE: (message.scan.spam?.score ?? 0).toFixed(3),
    SOURCE_IP: session.client.ip,
    SOURCE_PORT: String(session.client.port),
    TARGET_IP: session.destination?.ip ?? '',
    TARGET_PORT: session.destination ? String(session.destination.port) : '',
    IDENT: session.auth?.user ?? '-',
    AUTH_USER: session.auth?.user ?? '',
    HELO: session.helo ?? '',
    MAIL_FROM: envelope.mailFrom ?? '',
    // Recipients over the whole session (smtp-gated counted every accepted RCPT of the connection), plus the one judged.
    RCPTS_TOTAL: String(session.rcptsTotal + (envelope.rcpt !== undefined && ctx.stage === 'rcpt' ? 1 : 0)),
    SIZE: String(message.size),
    TRANSACTION: String(session.messages + 1),
    SESSION_ID: session.id,
    LOCK_KEY: lock && f.lockValue !== undefined ? lockKey(lock.subject, f.lockValue) : '',
    LOCK_REASON: f.lockReason ?? '',
    LOCK_DURATION: lock ? String(Math.round(lock.durationMs / 1000)) : '0',
    TIME: new Date(ctx.now).toISOString(),
    UNIXTIME: String(Math.floor(ctx.now / 1000)),
  };
  // Client-supplied values are passed as they are but without control characters (argv/env safe).
  for (const k of Object.keys(env)) env[k] = (env[k] as string).replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 1000);
  return env;
}
