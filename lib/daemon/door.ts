import type { EffectRunner } from '../core/effects.js';
import type { Limits } from '../core/limits.js';
import type { Logger } from '../core/logger.js';
import type { PolicyPort } from '../core/policy-port.js';
import type { QuarantineSink } from '../core/quarantine-sink.js';
import type { LockStore } from '../policy/lock-store.js';
import type { ScannerSet } from '../scanners/scanner.js';

/** What the daemon gives every door. */
export interface DoorDeps {
  readonly policy: PolicyPort;
  readonly locks: LockStore;
  readonly scanners: ScannerSet;
  readonly effects: EffectRunner;
  readonly limits: Limits;
  readonly logger: Logger;
  /** Our host name, for greetings, trace headers and {proxy.name}. */
  readonly hostname: string;
  /** Where quarantine verdicts put messages (the quarantine store); without it doors refuse or defer instead. */
  readonly quarantine?: QuarantineSink;
}

/** A door: a listener speaking one protocol that feeds the engine. */
export interface Door {
  readonly name: string;
  /** Binds and starts accepting; rejects if the address cannot be bound. */
  start(): Promise<void>;
  /** Stops accepting, lets sessions finish for up to `drainMs`, then closes what is left. */
  stop(drainMs: number): Promise<void>;
  /** Swaps the policy (and other reloadable deps) for sessions that start from now on; running sessions keep theirs. */
  update(deps: DoorDeps): void;
  /** Where it listens, once started (for logs and tests). */
  readonly addresses: readonly string[];
  /** Sessions in progress. */
  readonly activeSessions: number;
}
