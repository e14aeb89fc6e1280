/**
 * An intercept door for the hold-mode tests: the intercept harness (fixed mode on a free loopback port in front of
 * a given upstream, a SQLite lock store, an optional quarantine sink and scanners, a recording logger, a temp dir
 * that is the hold spool parent) with the real rule engine over `rules`, optionally with verdict headers.
 */
import type { Limits } from '../../lib/core/limits.js';
import type { QuarantineSink } from '../../lib/core/quarantine-sink.js';
import type { ScannerSet } from '../../lib/scanners/scanner.js';
import type { InterceptDoorOptions } from '../../lib/intercept/intercept-door.js';
import { compileRules, PolicyEngine } from '../../lib/policy/index.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { startInterceptDoor, type InterceptHarness } from './intercept-harness.js';

export type HoldDoor = InterceptHarness;

export function startHoldDoor(p: {
  upstreamPort: number;
  rules: string;
  verdictHeaders?: boolean;
  limits?: Partial<Limits>;
  scanners?: ScannerSet;
  quarantine?: QuarantineSink | ((dir: string) => QuarantineSink);
  options?: Partial<InterceptDoorOptions>;
}): Promise<HoldDoor> {
  return startInterceptDoor({
    upstreamPort: p.upstreamPort,
    policy: (locks) => new PolicyEngine(compileRules([{ file: 'hold.rules', text: p.rules }]), { locks, clock: SYSTEM_CLOCK }, { proxyName: 'sluice.test', ...(p.verdictHeaders ? { verdictHeaders: true } : {}) }),
    ...(p.limits ? { limits: p.limits } : {}),
    ...(p.scanners ? { scanners: p.scanners } : {}),
    ...(p.quarantine ? { quarantine: p.quarantine } : {}),
    ...(p.options ? { options: p.options } : {}),
  });
}
