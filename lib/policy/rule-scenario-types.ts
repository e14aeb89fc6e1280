/** A scenario: the facts of one SMTP transaction, for embedded tests and `policy test --explain`. */
import type { RuleStage } from '../core/stage.js';
import type { SourceLocation, VerdictAction } from '../core/verdict.js';

export interface Scenario {
  client?: string;
  clientPort?: number;
  clientName?: string;
  helo?: string;
  auth?: string;
  tls?: boolean;
  /** "" is the null sender <>. */
  sender?: string;
  recipients?: string[];
  headers?: [string, string][];
  size?: number;
  declaredSize?: number;
  /**
   * Provider and scanner facts: "spf" → "fail"; "dnsbl.<zone>" → "127.0.0.2" | "failed" | "none";
   * "virus" → name; "spam.score" → "7.5"; "spam.threshold" → "5"; "spam.symbols" → "A,B"; "filter.code" → "1";
   * "scan.failed.<scanner>" → reason; "scan.skipped" → "clamd,spamd"; "time" → ISO 8601 or Unix ms;
   * "locks" → "failed" (the lock store is down); "door" → "milter" (default "test"); "earlytalker" → "yes".
   */
  facts?: Record<string, string>;
  /** Existing locks: key "client:<ip>" or "auth:<user>". */
  locks?: { key: string; reason: string }[];
  /** Original destination "ip", "ip:port" or "[v6]:port". */
  destination?: string;
}

export interface TestExpectation {
  readonly action: VerdictAction;
  readonly code?: number;
  readonly enhanced?: string;
  readonly stage: RuleStage;
  /** Expected headers added by the rules (value exact, or a regex source). */
  readonly headers: readonly { readonly name: string; readonly value?: string; readonly regex?: { pattern: string; flags: string } }[];
  readonly tags: readonly string[];
  /** Expected text of the reply (substring). */
  readonly text?: string;
}

export interface CompiledTest {
  readonly name: string;
  readonly location: SourceLocation;
  readonly scenario: Scenario;
  readonly expect: TestExpectation;
}

export function describeExpectation(e: TestExpectation): string {
  let s = e.action;
  if (e.code !== undefined) s += ` ${e.code}`;
  if (e.enhanced !== undefined) s += ` ${e.enhanced}`;
  if (e.text !== undefined) s += ` ${JSON.stringify(e.text)}`;
  s += ` at ${e.stage}`;
  for (const h of e.headers) s += `; header ${h.name}${h.value !== undefined ? ` ${JSON.stringify(h.value)}` : h.regex ? ` ~ /${h.regex.pattern}/${h.regex.flags}` : ''}`;
  for (const t of e.tags) s += `; tag ${t}`;
  return s;
}
