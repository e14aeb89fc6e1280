import type { Transaction } from './transaction.js';
import type { Effect } from './verdict.js';

/**
 * Carries out the side effects a verdict asks for that are not the engine's own (the engine applies locks itself
 * and emits a `hook` effect once per newly created lock). Fire-and-forget: never blocks or fails a session.
 */
export interface EffectRunner {
  run(effects: readonly Effect[], tx: Transaction): void;
}

export const NO_EFFECTS: EffectRunner = { run: () => undefined };
