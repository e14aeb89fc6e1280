/**
 * SPF (RFC 7208) for the policy engine: mailauth's SPF evaluator with our resolver injected (cache, limits,
 * timeouts, logging), plus what mailauth leaves out: the `exp=` explanation of a fail (RFC 7208 §6.2),
 * evaluated with full macro support, and an overall time bound (RFC 7208 §4.6.4 suggests 20 s).
 * The null sender checks the HELO identity (`postmaster@<helo>`, §2.4).
 */
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import { createRequire } from 'node:module';
import type { Logger } from '../core/logger.js';
import { NULL_LOGGER } from '../core/logger.js';
import type { SpfOutcome, SpfProvider, SpfQuery, SpfResultCode } from './providers.js';
import { reverseAddress } from './dns-name.js';
import type { DnsQuerier } from './dns-types.js';
import { expandSpfMacros, type SpfMacroContext } from './spf-macro.js';
import { nodeStyleResolver, truncateSpfName, type NodeStyleResolve } from './spf-resolver-adapter.js';
import { budgetResolver, type SpfResultError } from './spf-lookup-budget.js';

interface RawSpfResult {
  qualifier?: string;
  error?: string;
  text?: string;
  rr?: string;
  type?: string;
}
type SpfVerify = (domain: string, opts: object) => Promise<RawSpfResult | false>;
/** mailauth's SPF evaluator (no type declarations ship for this file). */
const { spfVerify } = createRequire(import.meta.url)('mailauth/lib/spf/spf-verify.js') as { spfVerify: SpfVerify };

/** RFC 7208 §4.3: a multi-label name with labels of 1-63 bytes and a proper top label. */
export function isSpfDomain(domain: string): boolean {
  const d = domain.endsWith('.') ? domain.slice(0, -1) : domain;
  if (d.length === 0 || d.length > 253) return false;
  const labels = d.split('.');
  if (labels.length < 2 || labels.some((l) => l.length === 0 || Buffer.byteLength(l) > 63)) return false;
  const top = labels[labels.length - 1] ?? '';
  return /^[a-z0-9]*[a-z][a-z0-9]*$/i.test(top) || /^[a-z0-9]+-[a-z0-9-]*[a-z0-9]$/i.test(top);
}

export interface SpfCheckerOptions {
  readonly resolver: DnsQuerier;
  /** The receiving host, for %{r} and the comments (default: os.hostname()). */
  readonly hostname?: string;
  /** DNS-querying terms per check (RFC 7208 §4.6.4: 10). */
  readonly maxLookups?: number;
  /** Lookups that return nothing (RFC 7208 §4.6.4: 2). */
  readonly maxVoidLookups?: number;
  /** Bound for the whole check in ms (default 20,000); past it the result is temperror. */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
  readonly now?: () => number;
}


/** mailauth's client-address check refuses what is not an IP; so do we, before asking it. */
function clientIp(ip: string): string | undefined {
  const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const addr = v4mapped?.[1] ?? ip;
  return isIP(addr) === 0 ? undefined : addr;
}

export class SpfChecker implements SpfProvider {
  private readonly dns: DnsQuerier;
  private readonly hostname: string;
  private readonly logger: Logger;
  private readonly timeoutMs: number;

  constructor(private readonly options: SpfCheckerOptions) {
    this.dns = options.resolver;
    this.hostname = options.hostname ?? osHostname();
    this.logger = options.logger ?? NULL_LOGGER;
    this.timeoutMs = options.timeoutMs ?? 20_000;
  }

  async check(query: SpfQuery): Promise<SpfOutcome> {
    const started = performance.now();
    const identity = query.sender === '' ? 'helo' : 'mailfrom';
    const helo = query.helo ?? '';
    const sender = query.sender === '' ? `postmaster@${helo}` : query.sender.includes('@') ? query.sender : `postmaster@${query.sender}`;
    const at = sender.lastIndexOf('@');
    const fixedSender = at === 0 ? `postmaster${sender}` : sender;
    const domain = fixedSender.slice(fixedSender.lastIndexOf('@') + 1).toLowerCase();
    const ip = clientIp(query.ip);
    let outcome: SpfOutcome;
    if (ip === undefined) {
      outcome = { result: 'permerror', identity, domain, explanation: 'client address is not an IP address' };
    } else {
      const queried: string[] = [];
      const resolver = nodeStyleResolver(this.dns, (name, type) => {
        if (type === 'TXT') queried.push(name.toLowerCase());
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.timeoutMs);
      });
      try {
        const res = await Promise.race([this.evaluate(domain, fixedSender, ip, helo, resolver), timeout]);
        if (res === 'timeout') {
          outcome = { result: 'temperror', identity, domain, explanation: 'SPF check timed out' };
        } else {
          let explanation = res.text;
          if (res.result === 'fail' && res.rr !== undefined) {
            const exp = await this.explain(domain, res.rr, queried, { sender: fixedSender, domain, ip, helo, receiver: this.hostname });
            if (exp !== undefined) explanation = exp;
          }
          outcome = {
            result: res.result,
            identity,
            domain,
            ...(explanation !== undefined ? { explanation } : {}),
            lookups: res.lookups,
          };
        }
      } catch (e) {
        outcome = { result: 'temperror', identity, domain, explanation: e instanceof Error ? e.message : String(e) };
      } finally {
        clearTimeout(timer);
      }
    }
    if (this.logger.isLevelEnabled === undefined || this.logger.isLevelEnabled('debug')) {
      this.logger.debug(
        { spf: { result: outcome.result, identity, domain, ip: query.ip, helo, sender: query.sender, lookups: outcome.lookups, ms: Math.round(performance.now() - started) } },
        'spf check',
      );
    }
    return outcome;
  }

  /** Runs mailauth's evaluator on the domain, with the lookup budget, and maps its raw result. */
  private async evaluate(
    domain: string,
    sender: string,
    ip: string,
    helo: string,
    base: NodeStyleResolve,
  ): Promise<{ result: SpfResultCode; text?: string; rr?: string; lookups: number }> {
    const maxLookups = this.options.maxLookups ?? 10;
    const maxVoid = this.options.maxVoidLookups ?? 2;
    const resolver = budgetResolver(base, maxLookups, maxVoid, true);
    // RFC 7208 §4.3: a malformed or single-label domain gives "none" without any lookup
    if (!isSpfDomain(domain)) return { result: 'none', text: `not a valid domain: ${domain}`, lookups: 0 };
    let raw: RawSpfResult | false;
    try {
      raw = await spfVerify(domain, {
        sender,
        ip,
        mta: this.hostname,
        helo,
        resolver,
        createSubResolver: () => budgetResolver(base, maxLookups, maxVoid, false),
      });
    } catch (e) {
      const r = (e as SpfResultError).spfResult as (RawSpfResult & { text?: string }) | undefined;
      raw = r ?? { error: 'temperror', text: e instanceof Error ? e.message : String(e) };
    }
    const lookups = resolver.getResolveCount();
    if (raw === false) return { result: 'neutral', lookups };
    const r = raw;
    const qualifier = r.qualifier ?? r.error;
    const result: SpfResultCode =
      qualifier === '+' ? 'pass' : qualifier === '-' ? 'fail' : qualifier === '~' ? 'softfail' : qualifier === '?' ? 'neutral'
      : qualifier === 'none' ? 'none' : qualifier === 'permerror' ? 'permerror' : 'temperror';
    const text =
      r.text ??
      (result === 'pass'
        ? `${domain} designates ${ip} as permitted sender`
        : result === 'fail' || result === 'softfail'
          ? `${domain} does not designate ${ip} as permitted sender`
          : result === 'neutral'
            ? `${ip} is neither permitted nor denied by ${domain}`
            : undefined);
    return { result, ...(text !== undefined ? { text } : {}), ...(r.rr !== undefined ? { rr: r.rr } : {}), lookups };
  }

  /**
   * The explanation of a fail: the `exp=` of the record that produced the result. That is the top record,
   * unless it ends in `redirect=` with no `all` and the redirect target was consulted, in which case the
   * target's record decides (RFC 7208 §6.1: the redirect replaces the record, explanation included).
   * Any problem (no exp, DNS error, not exactly one TXT record, macro error) means no explanation.
   */
  private async explain(topDomain: string, topRecord: string, queried: readonly string[], base: SpfMacroContext): Promise<string | undefined> {
    try {
      let domain = topDomain;
      let record = topRecord;
      for (let depth = 0; depth < 10; depth++) {
        const terms = record.trim().split(/\s+/).slice(1);
        const redirect = terms.find((t) => /^redirect=/i.test(t));
        if (redirect === undefined || terms.some((t) => /^[-+?~]?all$/i.test(t))) break;
        const ctx = { ...base, domain };
        const target = (await expandSpfMacros(redirect.slice('redirect='.length), ctx, false)).replace(/\.$/, '').toLowerCase();
        if (!queried.includes(target)) break;
        const next = await this.spfRecord(target);
        if (next === undefined) return undefined;
        domain = target;
        record = next;
      }
      const terms = record.trim().split(/\s+/).slice(1);
      const exp = terms.find((t) => /^exp=/i.test(t));
      if (exp === undefined) return undefined;
      const ctx: SpfMacroContext = { ...base, domain, validatedName: () => this.validatedName(base.ip, domain) };
      const target = (await expandSpfMacros(exp.slice(4), ctx, false)).replace(/\.$/, '');
      if (target === '') return undefined;
      const ans = await this.dns.query(truncateSpfName(target), 'TXT');
      if (ans.records.length !== 1) return undefined;
      const text = (ans.records[0] ?? []).map((b) => b.toString('latin1')).join('');
      // eslint-disable-next-line no-control-regex
      if (/[^\x20-\x7e]/.test(text)) return undefined;
      return await expandSpfMacros(text, ctx, true);
    } catch {
      return undefined;
    }
  }

  private async spfRecord(domain: string): Promise<string | undefined> {
    const ans = await this.dns.query(domain, 'TXT');
    const spf = ans.records.map((r) => r.map((b) => b.toString('latin1')).join('')).filter((r) => /^v=spf1(\s|$)/i.test(r));
    return spf.length === 1 ? spf[0] : undefined;
  }

  /** %{p} (RFC 7208 §7.3): a PTR name of the client whose A/AAAA include it, preferring the domain's. */
  private async validatedName(ip: string, domain: string): Promise<string> {
    try {
      const rev = reverseAddress(ip);
      if (rev === undefined) return 'unknown';
      const ptr = await this.dns.query(`${rev}.${isIP(ip) === 6 ? 'ip6' : 'in-addr'}.arpa`, 'PTR');
      const valid: string[] = [];
      for (const name of ptr.records.slice(0, 10)) {
        const addrs = await this.dns.query(name, isIP(ip) === 6 ? 'AAAA' : 'A').catch(() => undefined);
        if (addrs?.records.some((a) => normalizeIp(a) === normalizeIp(ip))) valid.push(name);
      }
      const d = domain.toLowerCase();
      return (
        valid.find((n) => n.toLowerCase() === d) ??
        valid.find((n) => n.toLowerCase().endsWith('.' + d)) ??
        valid[0] ??
        'unknown'
      );
    } catch {
      return 'unknown';
    }
  }
}

function normalizeIp(ip: string): string {
  return isIP(ip) === 6 ? reverseAddress(ip) ?? ip : ip;
}
