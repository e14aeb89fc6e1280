import type { RuleStage } from './stage.js';
import type { Transaction } from './transaction.js';
import type { Verdict } from './verdict.js';

/**
 * What a door needs from the policy engine. Doors depend on this interface only;
 * lib/policy's PolicyEngine implements it.
 */
export interface PolicyPort {
  /** Evaluates the rules bound to `stage` for this transaction. Never rejects: failures become tempfail verdicts. */
  evaluate(stage: RuleStage, tx: Transaction): Promise<Verdict>;
  /** What the loaded rules look at, so doors ask their peers only for that (milter negotiation, header capture). */
  readonly needs: PolicyNeeds;
}

export interface PolicyNeeds {
  /** Stages with at least one rule. */
  readonly stages: ReadonlySet<RuleStage>;
  /** Rules read message headers (the door must collect them). */
  readonly headers: boolean;
  /** Rules read scanner results (the door must run the scanners before eom). */
  readonly scan: boolean;
  /**
   * Rules read the message size (`size`, or an eom rule's action hook, which gets SIZE): the door must see the
   * whole message to count it. Absent: assume they do when there are eom rules.
   */
  readonly size?: boolean;
  /** Rules read the SPF result. */
  readonly spf: boolean;
  /** DNS list zones the rules consult. */
  readonly dnsLists: ReadonlySet<string>;
  /**
   * Stages where a rule may answer reject or tempfail. Absent: any stage with rules may (a door must then give
   * every such stage its own answer). The milter door uses it to move DATA's rules to the next event.
   */
  readonly refuses?: ReadonlySet<RuleStage>;
}
