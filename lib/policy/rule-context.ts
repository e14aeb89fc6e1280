/**
 * The per-evaluation context compiled conditions read from. Provider facts (SPF, DNS lists, locks) are
 * fetched lazily: a condition that needs a fact not yet known throws a NeedFact, the engine fetches it
 * (bounded by a timeout; failures become values) and evaluates that rule again. Conditions are pure over
 * the context, so re-running one is safe, and stages whose rules need no provider run synchronously.
 */
import type { RuleStage } from '../core/stage.js';
import type { Transaction } from '../core/transaction.js';
import type { LockEntry } from './lock-store.js';
import type { DnsListOutcome, PolicyProviders, SpfOutcome } from './providers.js';
import { parseIp, type ParsedIp } from './ip-match.js';

export type FactKey = string; // "spf", "dnsbl:<zone>", "rhsbl:<zone>", "lock:client", "lock:auth"

export type FactValue = SpfOutcome | DnsListOutcome | LockFact;

export interface LockFact {
  readonly entry?: LockEntry;
  /** The lock store could not answer. */
  readonly error?: string;
}

/** How to get a fact from the providers, and what it is when they fail or time out. */
export interface FactSpec {
  fetch(providers: PolicyProviders): Promise<FactValue>;
  failed(reason: string): FactValue;
}

/** Thrown (not an Error: cheap, no stack) when a condition needs a provider fact not fetched yet. */
export class NeedFact {
  constructor(readonly key: FactKey, readonly spec: FactSpec) {}
}

export class EvalContext {
  /** Results of combined-regex pre-checks for this evaluation, by group id (undefined = not computed). */
  readonly groups: (boolean | undefined)[] = [];
  private ipParsed: ParsedIp | null | undefined;
  private destParsed: ParsedIp | null | undefined;
  /** Lock entries that made `is locked` true, for {lock.reason}. */
  lastLock?: LockEntry;

  constructor(
    readonly tx: Transaction,
    readonly stage: RuleStage,
    readonly now: number,
    /** SPF and DNS list facts, shared across the stages of one session (the same query is asked once). */
    readonly sessionFacts: Map<FactKey, FactValue>,
    readonly proxyName: string,
  ) {}

  get clientIp(): ParsedIp | undefined {
    if (this.ipParsed === undefined) this.ipParsed = parseIp(this.tx.session.client.ip) ?? null;
    return this.ipParsed ?? undefined;
  }

  get destinationIp(): ParsedIp | undefined {
    if (this.destParsed === undefined) {
      const d = this.tx.session.destination;
      this.destParsed = d ? (parseIp(d.ip) ?? null) : null;
    }
    return this.destParsed ?? undefined;
  }

  /** Lock facts: fetched fresh for every evaluation (a lock may be set between stages). */
  readonly localFacts = new Map<FactKey, FactValue>();

  static isLocal(key: FactKey): boolean {
    return key.startsWith('lock:');
  }

  store(key: FactKey, v: FactValue): void {
    (EvalContext.isLocal(key) ? this.localFacts : this.sessionFacts).set(key, v);
  }

  has(key: FactKey): boolean {
    return (EvalContext.isLocal(key) ? this.localFacts : this.sessionFacts).has(key);
  }

  fact<T extends FactValue>(key: FactKey, spec: () => FactSpec): T {
    const v = (EvalContext.isLocal(key) ? this.localFacts : this.sessionFacts).get(key);
    if (v === undefined) throw new NeedFact(key, spec());
    return v as T;
  }
}
