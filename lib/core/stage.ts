/** The ordered stages every door reports, in the order SMTP meets them. */
export const STAGES = ['connect', 'helo', 'auth', 'mail', 'rcpt', 'data', 'header', 'eoh', 'body', 'eom'] as const;
export type Stage = (typeof STAGES)[number];

/** Stages a rule can be bound to (body chunks are seen by scanners, not by rules). */
export const RULE_STAGES = ['connect', 'helo', 'auth', 'mail', 'rcpt', 'data', 'header', 'eoh', 'eom'] as const;
export type RuleStage = (typeof RULE_STAGES)[number];

export function isRuleStage(s: string): s is RuleStage {
  return (RULE_STAGES as readonly string[]).includes(s);
}

/** How a door learned where the client meant to connect. */
export type DestinationSource = 'fixed' | 'tproxy' | 'redirect' | 'proxy' | 'milter' | 'xforward' | 'policy' | 'none';
export type DoorName = 'intercept' | 'milter' | 'filter' | 'policy' | 'test';

export interface Endpoint {
  readonly ip: string;
  readonly port: number;
}

/** A stage event: a discriminated union on `stage`, the same for every door. */
export type StageEvent =
  | {
      readonly stage: 'connect';
      readonly door: DoorName;
      readonly client: Endpoint;
      /** Reverse-DNS name of the client if the door knows it ("unknown" otherwise). */
      readonly clientName?: string;
      readonly destination?: Endpoint;
      readonly destinationSource?: DestinationSource;
      /** The client spoke before the greeting. */
      readonly earlytalker?: boolean;
      /** Concurrent sessions at the door when this one started, this one included (from this client; in total). */
      readonly sessions?: SessionCounts;
    }
  | { readonly stage: 'helo'; readonly name: string; readonly extended: boolean }
  | { readonly stage: 'tls'; readonly active: boolean; readonly protocol?: string; readonly cipher?: string }
  | { readonly stage: 'auth'; readonly user: string; readonly mechanism?: string }
  | { readonly stage: 'mail'; readonly address: string; readonly params?: Readonly<Record<string, string>> }
  | { readonly stage: 'rcpt'; readonly address: string; readonly params?: Readonly<Record<string, string>> }
  | { readonly stage: 'data' }
  | { readonly stage: 'header'; readonly name: string; readonly value: string }
  | { readonly stage: 'eoh' }
  | { readonly stage: 'body'; readonly bytes: number }
  | { readonly stage: 'eom'; readonly size?: number }
  | { readonly stage: 'scan'; readonly results: Partial<ScanResults> }
  | { readonly stage: 'reset' }
  | { readonly stage: 'close' };

/** Concurrent sessions at a door, counting the session they are reported for. */
export interface SessionCounts {
  readonly client: number;
  readonly total: number;
}

/** What the content scanners found; filled in before the eom stage is evaluated. */
export interface ScanResults {
  readonly virus?: { readonly found: boolean; readonly name?: string; readonly scanner: string };
  readonly spam?: { readonly score: number; readonly threshold: number; readonly symbols: readonly string[]; readonly isSpam: boolean };
  readonly filter?: { readonly code: number; readonly reply?: string };
  /** Scanners skipped (e.g. message over their size limit), by scanner name. */
  readonly skipped: readonly string[];
  /** Scanners that failed or timed out, by scanner name, with the reason. */
  readonly failed: Readonly<Record<string, string>>;
}

export const NO_SCAN_RESULTS: ScanResults = Object.freeze({ skipped: [], failed: {} });
