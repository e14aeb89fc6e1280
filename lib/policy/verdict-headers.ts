/**
 * Scanner verdict headers (X-Virus-Status, X-Spam-Status, X-Spam-Score), built from a transaction's scan results
 * by a pure function. The engine appends them as `add` mutations to an eom verdict that keeps the message, so
 * every door that applies eom mutations (milter, filter, intercept in hold mode) writes the same headers.
 *
 *   virus clean     → `Clean`                       spam below threshold → `No, score=1.2 required=5.0 tests=A,B`
 *   virus found     → `Infected (Eicar-Signature)`  spam over threshold  → `Yes, score=15.2 required=5.0 tests=GTUBE`
 *   scanner skipped → `Skipped (too large)`         X-Spam-Score         → `15.2`
 *   scanner failed  → `Unchecked (scanner failed)`  scanner not run      → no header
 *
 * Values are one line of printable ASCII (scanner-supplied names are cleaned), bounded in length.
 */
import type { ScanResults } from '../core/stage.js';
import type { HeaderMutation } from '../core/verdict.js';

export interface VerdictHeaderNames {
  /** Header for the virus scanner's verdict; false leaves it out (default X-Virus-Status). */
  readonly virus?: string | false;
  /** Header for the spam verdict; false leaves it out (default X-Spam-Status). */
  readonly spamStatus?: string | false;
  /** Header for the bare spam score; false leaves it out (default X-Spam-Score). */
  readonly spamScore?: string | false;
}

export const DEFAULT_VERDICT_HEADERS = Object.freeze({ virus: 'X-Virus-Status', spamStatus: 'X-Spam-Status', spamScore: 'X-Spam-Score' } as const);

/** Scanner names (results.skipped / results.failed) that answer the virus and the spam question. */
const VIRUS_SCANNERS = ['clamd'];
const SPAM_SCANNERS = ['spamd'];
/** Longest value written (the tests list is cut at a comma before it). */
export const MAX_VERDICT_VALUE = 900;
/** RFC 5322 field name: printable ASCII except colon. */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;

export function isValidHeaderName(name: string): boolean {
  return FIELD_NAME.test(name);
}

/** One line of printable ASCII: control characters and non-ASCII become spaces/`?`, runs of space collapse. */
function clean(text: string, max: number): string {
  const s = text
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/ {2,}/g, ' ')
    .trim();
  return s.length > max ? s.slice(0, max) : s;
}

function fixed1(n: number): string {
  return Number.isFinite(n) ? n.toFixed(1) : '0.0';
}

function state(results: ScanResults, scanners: readonly string[]): 'skipped' | 'failed' | undefined {
  if (scanners.some((n) => results.failed[n] !== undefined)) return 'failed';
  if (scanners.some((n) => results.skipped.includes(n))) return 'skipped';
  return undefined;
}

export function virusStatus(results: ScanResults): string | undefined {
  const v = results.virus;
  if (v) return v.found ? `Infected (${clean(v.name ?? 'unknown', 200) || 'unknown'})` : 'Clean';
  const s = state(results, VIRUS_SCANNERS);
  return s === 'failed' ? 'Unchecked (scanner failed)' : s === 'skipped' ? 'Skipped (too large)' : undefined;
}

export function spamStatus(results: ScanResults): string | undefined {
  const sp = results.spam;
  if (sp) {
    const head = `${sp.isSpam ? 'Yes' : 'No'}, score=${fixed1(sp.score)} required=${fixed1(sp.threshold)}`;
    const tests: string[] = [];
    let len = head.length + ' tests='.length;
    for (const sym of sp.symbols) {
      const t = clean(sym, 100).replace(/[ ,]/g, '_');
      if (t === '') continue;
      if (len + t.length + 1 > MAX_VERDICT_VALUE) break;
      tests.push(t);
      len += t.length + 1;
    }
    return `${head} tests=${tests.length > 0 ? tests.join(',') : 'none'}`;
  }
  const s = state(results, SPAM_SCANNERS);
  return s === 'failed' ? 'Unchecked (scanner failed)' : s === 'skipped' ? 'Skipped (too large)' : undefined;
}

/** The `add` mutations for the scan results; none for a scanner that did not run or a disabled header. */
export function verdictHeaders(results: ScanResults, names: VerdictHeaderNames = {}): HeaderMutation[] {
  const out: HeaderMutation[] = [];
  const virusName = names.virus === undefined ? DEFAULT_VERDICT_HEADERS.virus : names.virus;
  const spamName = names.spamStatus === undefined ? DEFAULT_VERDICT_HEADERS.spamStatus : names.spamStatus;
  const scoreName = names.spamScore === undefined ? DEFAULT_VERDICT_HEADERS.spamScore : names.spamScore;
  const v = virusStatus(results);
  if (virusName && v !== undefined) out.push({ kind: 'add', name: virusName, value: v });
  const s = spamStatus(results);
  if (spamName && s !== undefined) out.push({ kind: 'add', name: spamName, value: s });
  if (scoreName && results.spam) out.push({ kind: 'add', name: scoreName, value: fixed1(results.spam.score) });
  return out;
}
