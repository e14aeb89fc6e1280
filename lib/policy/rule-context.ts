/**
 * The per-evaluation context compiled conditions read from. Provider facts (SPF, DNS lists, locks) are
 * fetched lazily: a condition that needs a fact not yet known throws a NeedFact, the engine fetches it
 * (bounded by a timeout; failures become values) and evaluates that rule again. Conditions are pure over
 * the context, so re-running one is safe, and stages whose rules need no provider run synchronously.
 * Everything here is allocated on first use only: the no-match path of a stage allocates one object.
 */
import type { RuleStage } from '../core/stage.js';
import type { SessionFacts, Transaction } from '../core/transaction.js';
import type { LockEntry } from './lock-store.js';
import type { Clock, DnsListOutcome, PolicyProviders, SpfOutcome } from './providers.js';
import { parseIpCached, type ParsedIp } from './ip-match.js';

export type FactKey = string; // "spf\0ip\0helo\0sender", "dnsbl\0zone\0ip", "rhsbl\0zone\0domain", "lock:client:ip", "lock:auth:user"

export type FactValue = SpfOutcome | DnsListOutcome | LockFact;

export interface LockFact {
  readonly entry?: LockEntry;
  /** The lock store could not answer. */
  readonly error?: string;
}

/** How to get a fact from the providers, and what it is when they fail or time out. */
export interface FactSpec {
  /**
   * The value without waiting, when the providers have it at hand (a lock in the process's own store, a fact
   * no provider is configured for); undefined (or a throw) sends the rule down the asynchronous fetch.
   */
  now?(providers: PolicyProviders): FactValue | undefined;
  fetch(providers: PolicyProviders): Promise<FactValue>;
  failed(reason: string): FactValue;
}

/** Thrown (not an Error: cheap, no stack) when a condition needs a provider fact not fetched yet. */
export class NeedFact {
  constructor(readonly key: FactKey, readonly spec: FactSpec) {}
}

const UNSET = Symbol('unset');

export class EvalContext {
  /** Results of combined-regex pre-checks for this evaluation, by group id (undefined = not computed). */
  groups: (boolean | undefined)[] | undefined;
  /** Memoised field values by slot (see rule-fields.ts), so a field read by many rules is computed once. */
  private slots: unknown[] | undefined;
  private ipParsed: ParsedIp | null | undefined;
  private destParsed: ParsedIp | null | undefined;
  private local: Map<FactKey, FactValue> | undefined;
  private shared: Map<FactKey, FactValue> | undefined;
  /** Lock entries that made `is locked` true, for {lock.reason}. */
  lastLock?: LockEntry;
  /** When this evaluation first waited for a provider (for the evaluation budget). */
  fetchStarted?: number;

  constructor(
    readonly tx: Transaction,
    readonly stage: RuleStage,
    private readonly clock: Clock,
    /** SPF and DNS list facts, shared across the stages of one session (the same query is asked once). */
    private readonly sessionFacts: (s: SessionFacts) => Map<FactKey, FactValue>,
    readonly proxyName: string,
    /** For facts a provider answers without waiting (FactSpec.now). */
    private readonly providers?: PolicyProviders,
  ) {}

  private nowMs: number | undefined;
  /** The clock, read once per evaluation and only if a rule looks at the time. */
  get now(): number {
    return (this.nowMs ??= this.clock.now());
  }

  get clientIp(): ParsedIp | undefined {
    if (this.ipParsed === undefined) this.ipParsed = parseIpCached(this.tx.session.client.ip) ?? null;
    return this.ipParsed ?? undefined;
  }

  get destinationIp(): ParsedIp | undefined {
    if (this.destParsed === undefined) {
      const d = this.tx.session.destination;
      this.destParsed = d ? (parseIpCached(d.ip) ?? null) : null;
    }
    return this.destParsed ?? undefined;
  }

  /** The memoised value in `slot`, computing it with `compute` the first time. */
  memo<T>(slot: number, compute: (ctx: EvalContext) => T): T {
    let s = this.slots;
    if (s === undefined) this.slots = s = [];
    const v = s[slot];
    if (v !== undefined) return (v === UNSET ? undefined : v) as T;
    const c = compute(this);
    s[slot] = c === undefined ? UNSET : c;
    return c;
  }

  static isLocal(key: FactKey): boolean {
    return key.startsWith('lock:');
  }

  private mapFor(key: FactKey): Map<FactKey, FactValue> {
    if (EvalContext.isLocal(key)) return (this.local ??= new Map());
    return (this.shared ??= this.sessionFacts(this.tx.session));
  }

  store(key: FactKey, v: FactValue): void {
    this.mapFor(key).set(key, v);
  }

  has(key: FactKey): boolean {
    return this.mapFor(key).has(key);
  }

  fact<T extends FactValue>(key: FactKey, spec: () => FactSpec): T {
    const map = this.mapFor(key);
    const v = map.get(key);
    if (v !== undefined) return v as T;
    const s = spec();
    if (s.now !== undefined && this.providers !== undefined) {
      let value: FactValue | undefined;
      try {
        value = s.now(this.providers);
      } catch {
        // The asynchronous fetch asks again and reports the failure the usual way.
      }
      if (value !== undefined) {
        map.set(key, value);
        return value as T;
      }
    }
    throw new NeedFact(key, s);
  }
}
