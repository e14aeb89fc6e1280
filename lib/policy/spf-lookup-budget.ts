/**
 * The DNS side of an SPF check as mailauth's evaluator (spf-verify.js) calls it: counts DNS-querying terms
 * and void lookups against the RFC 7208 §4.6.4 limits (10 and 2), turns DNS failures into temperror, checks
 * every fetched SPF record's syntax in full (a syntax error anywhere is a permerror), and treats a target
 * name that cannot exist (empty or over-long label) as a lookup that found nothing.
 * Replaces mailauth's own wrapper (lib/spf/index.js), whose name pre-check turns such names into permerror
 * and which hides the evaluator's raw result.
 */
import { DnsError } from './dns-types.js';
import type { NodeStyleResolve } from './spf-resolver-adapter.js';
import { spfRecordProblem } from './spf-record-syntax.js';

export interface SpfResultError extends Error {
  spfResult?: { error: string; text: string };
  code?: string;
}

export function spfError(error: 'permerror' | 'temperror' | 'none', text: string, cause?: Error): SpfResultError {
  const e: SpfResultError = cause ?? new Error(text);
  e.spfResult = { error, text };
  return e;
}

export interface BudgetResolver {
  (name: string, type: string, opts?: { clientIpType?: number }): Promise<unknown[]>;
  getResolveCount(): number;
  getResolveLimit(): number;
  getVoidCount(): number;
  getSubResolveCounts(): Record<string, number>;
  updateSubQueries(type: string, count: number): void;
}

const isVoid = (e: unknown): boolean => e instanceof DnsError && (e.code === 'ENOTFOUND' || e.code === 'ENODATA');

/** mailauth's dual-stack rule: an A/AAAA lookup is void only when both families are empty. */
async function dualStack(base: NodeStyleResolve, name: string, ipv6: boolean): Promise<unknown[]> {
  const [a, aaaa] = await Promise.allSettled([base(name, 'A'), base(name, 'AAAA')]);
  const mine = ipv6 ? aaaa : a;
  const other = ipv6 ? a : aaaa;
  if (mine.status === 'fulfilled') return mine.value;
  if (!isVoid(mine.reason)) throw mine.reason;
  if (other.status === 'rejected' && isVoid(other.reason)) throw mine.reason;
  return [];
}

export function budgetResolver(base: NodeStyleResolve, maxLookups: number, maxVoid: number, ignoreFirst: boolean): BudgetResolver {
  let count = 0;
  let voids = 0;
  let first = ignoreFirst;
  const sub: Record<string, number> = {};
  const fn = (async (name: string, type: string, opts?: { clientIpType?: number }): Promise<unknown[]> => {
    if (first) first = false;
    else count++;
    if (count > maxLookups) throw spfError('permerror', 'Too many DNS requests');
    let out: unknown[];
    try {
      out =
        opts?.clientIpType !== undefined && (type === 'A' || type === 'AAAA')
          ? await dualStack(base, name, opts.clientIpType === 6)
          : await base(name, type);
    } catch (e) {
      const code = e instanceof DnsError ? e.code : undefined;
      if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EBADNAME') {
        voids++;
        if (voids > maxVoid) throw spfError('permerror', 'Too many void DNS results', e as Error);
        return [];
      }
      if ((e as SpfResultError).spfResult !== undefined) throw e;
      throw spfError('temperror', `DNS ${code ?? 'error'} for ${type} ${name}`, e as Error);
    }
    if (type === 'TXT') {
      const spf = (out as string[][]).map((r) => r.join('')).filter((r) => /^v=spf1( |$)/i.test(r));
      const problem = spf.length === 1 && spf[0] !== undefined ? spfRecordProblem(spf[0]) : undefined;
      if (problem !== undefined) throw spfError('permerror', `SPF record of ${name}: ${problem}`);
    }
    return out;
  }) as BudgetResolver;
  fn.getResolveCount = () => count;
  fn.getResolveLimit = () => maxLookups;
  fn.getVoidCount = () => voids;
  fn.getSubResolveCounts = () => sub;
  fn.updateSubQueries = (type: string, n: number) => {
    sub[type] = (sub[type] ?? 0) + n;
  };
  return fn;
}
