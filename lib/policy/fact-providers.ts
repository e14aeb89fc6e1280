/**
 * Providers that answer from a scenario's facts instead of the network, so embedded tests and
 * `policy test --explain` run the daemon's evaluator unchanged.
 */
import type { ScanResults } from '../core/stage.js';
import type { LockStore } from './lock-store.js';
import { MemoryLockStore } from './lock-store-memory.js';
import type { DnsListOutcome, DnsListProvider, PolicyProviders, SpfOutcome, SpfProvider, SpfResultCode } from './providers.js';
import { SPF_RESULTS } from './providers.js';
import type { Scenario } from './rule-scenario-types.js';

/** Scenarios without a `time` fact run at this instant (a Monday, noon UTC), so tests are reproducible. */
export const DEFAULT_SCENARIO_TIME = Date.UTC(2026, 0, 5, 12, 0, 0);

export function scenarioTime(s: Scenario): number {
  const t = s.facts?.['time'];
  if (t === undefined) return DEFAULT_SCENARIO_TIME;
  if (/^\d+$/.test(t)) return Number(t);
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? DEFAULT_SCENARIO_TIME : ms;
}

export function factSpf(s: Scenario): SpfProvider {
  const r = s.facts?.['spf'];
  const result: SpfResultCode = r !== undefined && (SPF_RESULTS as readonly string[]).includes(r) ? (r as SpfResultCode) : 'none';
  return {
    check: async (q): Promise<SpfOutcome> => ({ result, identity: q.sender === '' ? 'helo' : 'mailfrom', explanation: 'scenario fact' }),
  };
}

export function factDnsLists(s: Scenario): DnsListProvider {
  const facts = s.facts ?? {};
  const zones = new Set(Object.keys(facts).filter((k) => k.startsWith('dnsbl.')).map((k) => k.slice(6)));
  const answer = (zone: string): DnsListOutcome => {
    const v = facts[`dnsbl.${zone}`];
    if (v === undefined || v === 'none' || v === '') return { zone, listed: false, codes: [] };
    if (v === 'failed' || v.startsWith('error')) return { zone, listed: false, codes: [], error: v === 'failed' ? 'lookup failed (scenario fact)' : v };
    return { zone, listed: true, codes: v.split(',').map((x) => x.trim()), reason: `listed in ${zone} (scenario fact)` };
  };
  return { zones, lookupAddress: async (zone) => answer(zone), lookupDomain: async (zone) => answer(zone) };
}

/** A lock store whose every call fails, for the `locks failed` fact. */
class FailingLockStore implements LockStore {
  private fail(): Promise<never> {
    return Promise.reject(new Error('lock store unavailable (scenario fact)'));
  }
  lock = () => this.fail();
  unlock = () => this.fail();
  isLocked = () => this.fail();
  list = () => this.fail();
  allow = () => this.fail();
  disallow = () => this.fail();
  listAllowed = () => this.fail();
  sweep = () => this.fail();
  close = async (): Promise<void> => undefined;
}

export async function factProviders(s: Scenario): Promise<PolicyProviders> {
  const now = scenarioTime(s);
  const clock = { now: () => now };
  let locks: LockStore;
  if (s.facts?.['locks'] === 'failed') locks = new FailingLockStore();
  else {
    const m = new MemoryLockStore({ clock });
    for (const l of s.locks ?? []) await m.lock(l.key, 3_600_000, l.reason, 'scenario');
    locks = m;
  }
  return { locks, clock, spf: factSpf(s), dnsLists: factDnsLists(s) };
}

/** Scanner results from the scenario's facts, or undefined when it has none. */
export function scenarioScanResults(s: Scenario): Partial<ScanResults> | undefined {
  const f = s.facts ?? {};
  const out: { -readonly [K in keyof ScanResults]?: ScanResults[K] } = {};
  let any = false;
  if (f['virus'] !== undefined) {
    out.virus = { found: f['virus'] !== '' && f['virus'] !== 'none', ...(f['virus'] && f['virus'] !== 'none' ? { name: f['virus'] } : {}), scanner: 'scenario' };
    any = true;
  }
  if (f['spam.score'] !== undefined) {
    const score = Number(f['spam.score']);
    const threshold = f['spam.threshold'] !== undefined ? Number(f['spam.threshold']) : 5;
    const symbols = (f['spam.symbols'] ?? '').split(',').map((x) => x.trim()).filter(Boolean);
    out.spam = { score, threshold, symbols, isSpam: score >= threshold };
    any = true;
  }
  if (f['filter.code'] !== undefined) {
    out.filter = { code: Number(f['filter.code']) };
    any = true;
  }
  const skipped = (f['scan.skipped'] ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  if (skipped.length) {
    out.skipped = skipped;
    any = true;
  }
  const failed: Record<string, string> = {};
  for (const [k, v] of Object.entries(f)) if (k.startsWith('scan.failed.')) failed[k.slice(12)] = v;
  if (Object.keys(failed).length) {
    out.failed = failed;
    any = true;
  }
  return any ? out : undefined;
}
