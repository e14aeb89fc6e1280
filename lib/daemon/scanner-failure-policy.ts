/**
 * `scanners.on_failure`: what happens at the end of a message when a scanner failed or timed out and no rule
 * decided (rules can decide themselves with `scanner(NAME) failed`). Postfix's rule applies: a dependency that
 * fails means tempfail unless configured otherwise, so a broken clamd never lets mail through unscanned by default.
 */
import type { PolicyPort } from '../core/policy-port.js';
import type { RuleStage } from '../core/stage.js';
import type { Transaction } from '../core/transaction.js';
import type { Verdict } from '../core/verdict.js';
import type { ScannerFailure } from './config-types.js';

export const SCANNER_FAILURE_REPLIES = {
  tempfail: { code: 451, enhanced: '4.3.0', lines: ['Content scanner unavailable, please try again later'] },
  reject: { code: 554, enhanced: '5.6.0', lines: ['Message could not be scanned'] },
} as const;

/** Wraps the engine so an undecided eom with failed scanners gets the configured action. */
export function withScannerFailureDefault(policy: PolicyPort, onFailure: ScannerFailure): PolicyPort {
  if (onFailure === 'accept') return policy;
  const reply = SCANNER_FAILURE_REPLIES[onFailure];
  const stages = new Set<RuleStage>(policy.needs.stages);
  stages.add('eom');
  return {
    needs: { ...policy.needs, stages, scan: true },
    async evaluate(stage: RuleStage, tx: Transaction): Promise<Verdict> {
      const v = await policy.evaluate(stage, tx);
      if (stage !== 'eom' || v.action !== 'continue') return v;
      const failed = Object.keys(tx.message.scan.failed);
      if (failed.length === 0) return v;
      return { ...v, action: onFailure, reply, reason: `scanner failed: ${failed.join(', ')}` };
    },
  };
}
