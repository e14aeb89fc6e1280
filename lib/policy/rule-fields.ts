/**
 * Every field a rule can test, its type, the first stage where it is known, and how to read it from the
 * evaluation context. The checker, the compiler, interpolation and docs/rules.md all follow this table.
 */
import { RULE_STAGES, type RuleStage } from '../core/stage.js';
import type { LockEntry } from './lock-store.js';
import type { DnsListOutcome, PolicyProviders, SpfOutcome } from './providers.js';
import { SPF_RESULTS } from './providers.js';
import type { ParsedIp } from './ip-match.js';
import type { EvalContext, FactSpec, LockFact } from './rule-context.js';

export type FieldType = 'address' | 'string' | 'number' | 'size' | 'duration' | 'bool' | 'enum' | 'dnslist' | 'scanner' | 'lockstore';

export interface FieldDef {
  readonly name: string;
  readonly type: FieldType;
  /** Several values (recipients, a repeated header): a comparison holds if it holds for any of them. */
  readonly multi?: boolean;
  readonly enumValues?: readonly string[];
  /** First stage where the field is known. */
  readonly from: RuleStage;
  /** Known only at these stages (rcpt: the recipient being judged; header.*: the header just read). */
  readonly only?: readonly RuleStage[];
  /** Function-like field: header("Name"), dnsbl(zone), scanner(name). */
  readonly arg?: 'header' | 'zone' | 'scanner';
  readonly argOptional?: boolean;
  readonly needs?: 'spf' | 'dns' | 'scan' | 'headers' | 'locks' | 'size';
  /** `client is locked` / `auth is locked`. */
  readonly lockable?: 'client' | 'auth';
  readonly doc: string;
  /** Memo slot of the value in the evaluation context (assigned below; fields without arguments only). */
  slot?: number;
  readonly str?: (ctx: EvalContext, arg: string) => string | undefined;
  readonly strs?: (ctx: EvalContext, arg: string) => readonly string[];
  readonly num?: (ctx: EvalContext) => number | undefined;
  readonly bool?: (ctx: EvalContext, arg: string) => boolean;
  readonly ip?: (ctx: EvalContext) => ParsedIp | undefined;
  readonly dns?: (ctx: EvalContext, zone: string) => DnsListOutcome;
}

export const STAGE_INDEX: Readonly<Record<RuleStage, number>> = Object.fromEntries(RULE_STAGES.map((s, i) => [s, i])) as Record<RuleStage, number>;

export function availableAt(f: { from: RuleStage; only?: readonly RuleStage[] }, stage: RuleStage): boolean {
  if (f.only) return f.only.includes(stage);
  return STAGE_INDEX[stage] >= STAGE_INDEX[f.from];
}

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const DOORS = ['intercept', 'milter', 'filter', 'policy', 'test'] as const;
const DEST_SOURCES = ['fixed', 'tproxy', 'redirect', 'proxy', 'milter', 'xforward', 'policy', 'none'] as const;

function domainOf(addr: string | undefined): string | undefined {
  if (addr === undefined) return undefined;
  const at = addr.lastIndexOf('@');
  return at < 0 ? undefined : addr.slice(at + 1).toLowerCase();
}

// ---- provider-backed facts ---------------------------------------------------------------------------

export function spfFact(ctx: EvalContext): SpfOutcome {
  const s = ctx.tx.session;
  const sender = ctx.tx.envelope.mailFrom ?? '';
  const key = `spf\u0000${s.client.ip}\u0000${s.helo ?? ''}\u0000${sender}`;
  return ctx.fact<SpfOutcome>(key, () => spfSpec(s.client.ip, s.helo, sender));
}

const NO_SPF_PROVIDER: SpfOutcome = Object.freeze({ result: 'none', identity: 'mailfrom', explanation: 'no SPF provider configured' });

function spfSpec(ip: string, helo: string | undefined, sender: string): FactSpec {
  return {
    now: (p) => (p.spf ? undefined : NO_SPF_PROVIDER),
    fetch: async (p) => (p.spf ? p.spf.check({ ip, sender, ...(helo !== undefined ? { helo } : {}) }) : NO_SPF_PROVIDER),
    failed: (reason) => ({ result: 'temperror', identity: 'mailfrom', explanation: reason }),
  };
}

export function dnsFact(ctx: EvalContext, kind: 'dnsbl' | 'rhsbl', zone: string): DnsListOutcome {
  const subject = kind === 'dnsbl' ? ctx.tx.session.client.ip : domainOf(ctx.tx.envelope.mailFrom) ?? '';
  const key = `${kind}\u0000${zone}\u0000${subject}`;
  // The answers that need no lookup: no provider, or no subject to look up.
  const atHand = (p: PolicyProviders): DnsListOutcome | undefined =>
    !p.dnsLists ? { zone, listed: false, codes: [], error: 'no DNS list provider configured' } : subject === '' ? { zone, listed: false, codes: [] } : undefined;
  return ctx.fact<DnsListOutcome>(key, () => ({
    now: atHand,
    fetch: async (p) => {
      const lists = p.dnsLists;
      if (!lists || subject === '') return atHand(p) as DnsListOutcome;
      return kind === 'dnsbl' ? lists.lookupAddress(zone, subject) : lists.lookupDomain(zone, subject);
    },
    failed: (reason) => ({ zone, listed: false, codes: [], error: reason }),
  }));
}

export function lockFact(ctx: EvalContext, subject: 'client' | 'auth'): LockFact | undefined {
  const value = subject === 'client' ? ctx.tx.session.client.ip : ctx.tx.session.auth?.user;
  if (value === undefined) return undefined;
  const key = `lock:${subject}:${value}`;
  return ctx.fact<LockFact>(key, () => ({
    now: (p) => {
      if (p.locks.isLockedNow === undefined) return undefined;
      const entry = p.locks.isLockedNow(`${subject}:${value}`);
      return entry ? { entry } : {};
    },
    fetch: async (p) => {
      const entry: LockEntry | undefined = await p.locks.isLocked(`${subject}:${value}`);
      return entry ? { entry } : {};
    },
    failed: (reason) => ({ error: reason }),
  }));
}

function isLocked(ctx: EvalContext, subject: 'client' | 'auth'): boolean {
  const f = lockFact(ctx, subject);
  if (f?.entry) {
    ctx.lastLock = f.entry;
    return true;
  }
  return false;
}

// ---- the table -------------------------------------------------------------------------------------------

const F: FieldDef[] = [
  { name: 'client', type: 'address', from: 'connect', lockable: 'client', doc: 'the client address (IPv4 or IPv6)', ip: (c) => c.clientIp, str: (c) => c.tx.session.client.ip, bool: (c) => isLocked(c, 'client') },
  { name: 'client.ip', type: 'address', from: 'connect', doc: 'same as `client`', ip: (c) => c.clientIp, str: (c) => c.tx.session.client.ip },
  { name: 'client.port', type: 'number', from: 'connect', doc: 'the client TCP port', num: (c) => c.tx.session.client.port },
  { name: 'client.name', type: 'string', from: 'connect', doc: 'the client reverse-DNS name, "unknown" if none', str: (c) => c.tx.session.clientName },
  { name: 'destination', type: 'address', from: 'connect', doc: 'the original destination address (where the client meant to connect)', ip: (c) => c.destinationIp, str: (c) => c.tx.session.destination?.ip },
  { name: 'destination.port', type: 'number', from: 'connect', doc: 'the original destination port', num: (c) => c.tx.session.destination?.port },
  { name: 'destination.source', type: 'enum', enumValues: DEST_SOURCES, from: 'connect', doc: 'how the destination was learned', str: (c) => c.tx.session.destinationSource },
  { name: 'door', type: 'enum', enumValues: DOORS, from: 'connect', doc: 'which door the session came through', str: (c) => c.tx.session.door },
  { name: 'earlytalker', type: 'bool', from: 'connect', doc: 'the client spoke before the greeting', bool: (c) => c.tx.session.earlytalker },
  { name: 'tls', type: 'bool', from: 'connect', doc: 'the session is encrypted (STARTTLS done)', bool: (c) => c.tx.session.tls.active },
  { name: 'tls.protocol', type: 'string', from: 'connect', doc: 'TLS protocol version, e.g. TLSv1.3', str: (c) => c.tx.session.tls.protocol },
  { name: 'tls.cipher', type: 'string', from: 'connect', doc: 'TLS cipher name', str: (c) => c.tx.session.tls.cipher },
  { name: 'hour', type: 'number', from: 'connect', doc: 'hour of the day, 0-23 (UTC)', num: (c) => new Date(c.now).getUTCHours() },
  { name: 'weekday', type: 'enum', enumValues: WEEKDAYS, from: 'connect', doc: 'day of the week (UTC): sun, mon, ..., sat', str: (c) => WEEKDAYS[new Date(c.now).getUTCDay()] },
  { name: 'session.age', type: 'duration', from: 'connect', doc: 'time since the client connected', num: (c) => Math.max(0, c.now - c.tx.session.startedAt) },
  { name: 'messages', type: 'number', from: 'connect', doc: 'messages already finished in this session', num: (c) => c.tx.session.messages },
  { name: 'sessions.client', type: 'number', from: 'connect', doc: 'concurrent sessions from this client address at connect, this one included (1 where the door does not count)', num: (c) => c.tx.session.sessions.client },
  { name: 'sessions.total', type: 'number', from: 'connect', doc: 'concurrent sessions at the door at connect, this one included (1 where the door does not count)', num: (c) => c.tx.session.sessions.total },
  { name: 'rcpts.total', type: 'number', from: 'connect', doc: 'recipients accepted over the whole session, all messages (at rcpt: before this one)', num: (c) => c.tx.session.rcptsTotal },
  { name: 'locks', type: 'lockstore', from: 'connect', doc: '`locks failed`: the lock store could not be asked', bool: (c) => lockFact(c, 'client')?.error !== undefined },
  { name: 'dnsbl', type: 'dnslist', arg: 'zone', from: 'connect', needs: 'dns', doc: 'dnsbl(ZONE): the client address looked up in a DNS list; alone: listed', dns: (c, z) => dnsFact(c, 'dnsbl', z) },
  { name: 'dnswl', type: 'dnslist', arg: 'zone', from: 'connect', needs: 'dns', doc: 'dnswl(ZONE): same lookup as dnsbl, for allow lists', dns: (c, z) => dnsFact(c, 'dnsbl', z) },
  { name: 'helo', type: 'string', from: 'helo', doc: 'the HELO/EHLO argument as sent', str: (c) => c.tx.session.helo },
  { name: 'authenticated', type: 'bool', from: 'auth', doc: 'the client authenticated (SMTP AUTH)', bool: (c) => c.tx.session.auth !== undefined },
  { name: 'auth', type: 'string', from: 'auth', lockable: 'auth', doc: 'the authenticated user name (empty if none)', str: (c) => c.tx.session.auth?.user, bool: (c) => isLocked(c, 'auth') },
  { name: 'auth.mechanism', type: 'string', from: 'auth', doc: 'the SASL mechanism used', str: (c) => c.tx.session.auth?.mechanism },
  { name: 'sender', type: 'string', from: 'mail', doc: 'the MAIL FROM address without <>; "" for the null sender', str: (c) => c.tx.envelope.mailFrom },
  { name: 'sender.domain', type: 'string', from: 'mail', doc: 'the domain of the sender (lower case)', str: (c) => domainOf(c.tx.envelope.mailFrom) },
  { name: 'size.declared', type: 'size', from: 'mail', doc: 'the SIZE= declared at MAIL FROM', num: (c) => c.tx.envelope.declaredSize },
  { name: 'spf', type: 'enum', enumValues: SPF_RESULTS, from: 'mail', needs: 'spf', doc: 'the SPF result for the sender (or the HELO for the null sender)', str: (c) => spfFact(c).result },
  { name: 'rhsbl', type: 'dnslist', arg: 'zone', from: 'mail', needs: 'dns', doc: 'rhsbl(ZONE): the sender domain looked up in a domain list', dns: (c, z) => dnsFact(c, 'rhsbl', z) },
  { name: 'rcpt', type: 'string', only: ['rcpt'], from: 'rcpt', doc: 'the recipient being judged (rcpt stage only)', str: (c) => c.tx.envelope.rcpt },
  { name: 'rcpt.domain', type: 'string', only: ['rcpt'], from: 'rcpt', doc: 'the domain of that recipient', str: (c) => domainOf(c.tx.envelope.rcpt) },
  { name: 'rcpts', type: 'string', multi: true, from: 'data', doc: 'all accepted recipients (any of them matches)', strs: (c) => c.tx.envelope.rcpts },
  { name: 'rcpts.count', type: 'number', from: 'rcpt', doc: 'recipients accepted so far (at rcpt: before this one)', num: (c) => c.tx.envelope.rcpts.length },
  { name: 'header.name', type: 'string', only: ['header'], from: 'header', needs: 'headers', doc: 'the name of the header just read (header stage)', str: (c) => c.tx.message.headers[c.tx.message.headers.length - 1]?.[0] },
  { name: 'header.value', type: 'string', only: ['header'], from: 'header', needs: 'headers', doc: 'the value of the header just read (header stage)', str: (c) => c.tx.message.headers[c.tx.message.headers.length - 1]?.[1] },
  { name: 'header', type: 'string', multi: true, arg: 'header', from: 'header', needs: 'headers', doc: 'header("Name"): every value of that header (any matches); `exists`', strs: (c, name) => headerValues(c, name) },
  { name: 'headers.count', type: 'number', from: 'header', needs: 'headers', doc: 'headers read so far', num: (c) => c.tx.message.headers.length },
  { name: 'size', type: 'size', from: 'eom', needs: 'size', doc: 'the message size in bytes', num: (c) => c.tx.message.size },
  { name: 'virus', type: 'bool', from: 'eom', needs: 'scan', doc: 'a virus scanner found something', bool: (c) => c.tx.message.scan.virus?.found === true },
  { name: 'virus.name', type: 'string', from: 'eom', needs: 'scan', doc: 'the virus name', str: (c) => c.tx.message.scan.virus?.name },
  { name: 'spam', type: 'bool', from: 'eom', needs: 'scan', doc: 'the spam scanner says spam (score >= threshold)', bool: (c) => c.tx.message.scan.spam?.isSpam === true },
  { name: 'spam.score', type: 'number', from: 'eom', needs: 'scan', doc: 'the spam score', num: (c) => c.tx.message.scan.spam?.score },
  { name: 'spam.threshold', type: 'number', from: 'eom', needs: 'scan', doc: 'the spam threshold the scanner used', num: (c) => c.tx.message.scan.spam?.threshold },
  { name: 'spam.symbols', type: 'string', multi: true, from: 'eom', needs: 'scan', doc: 'the spam rules that hit (any matches)', strs: (c) => c.tx.message.scan.spam?.symbols ?? [] },
  { name: 'filter.code', type: 'number', from: 'eom', needs: 'scan', doc: 'exit code of the filter command', num: (c) => c.tx.message.scan.filter?.code },
  { name: 'scanner', type: 'scanner', arg: 'scanner', argOptional: true, from: 'eom', needs: 'scan', doc: '`scanner(NAME) failed`, `scanner(NAME) skipped`, `scanner failed` (any)', bool: () => false },
];

function headerValues(c: EvalContext, name: string): readonly string[] {
  const lower = name.toLowerCase();
  const out: string[] = [];
  for (const [n, v] of c.tx.message.headers) if (n.toLowerCase() === lower) out.push(v);
  return out;
}

/** Memo slots: a field's value in slot 2*k, its lower-case form in 2*k+1, k dense in the order fields are first read. */
let nextSlot = 0;
export function slotOf(f: FieldDef): number {
  if (f.slot === undefined) {
    f.slot = nextSlot;
    nextSlot += 2;
  }
  return f.slot;
}
export const FIELDS: ReadonlyMap<string, FieldDef> = new Map(F.map((f) => [f.name, f]));

/** Variables usable in {braces} in reply texts, header values and lock reasons beyond the fields above. */
export interface VariableDef {
  readonly name: string;
  readonly from: RuleStage;
  readonly only?: readonly RuleStage[];
  readonly doc: string;
  readonly get: (ctx: EvalContext, rule: string) => string;
}

const V: VariableDef[] = [
  { name: 'proxy.name', from: 'connect', doc: 'this host name as configured (proxy_name)', get: (c) => c.proxyName },
  { name: 'rule', from: 'connect', doc: 'the name of the rule', get: (_c, r) => r },
  { name: 'session.id', from: 'connect', doc: 'the session id', get: (c) => c.tx.session.id },
  { name: 'session.start', from: 'connect', doc: 'when the session started, Unix seconds', get: (c) => String(Math.floor(c.tx.session.startedAt / 1000)) },
  { name: 'pid', from: 'connect', doc: 'the process id', get: () => String(process.pid) },
  { name: 'time', from: 'connect', doc: 'now, ISO 8601 UTC', get: (c) => new Date(c.now).toISOString() },
  { name: 'unixtime', from: 'connect', doc: 'now, Unix seconds', get: (c) => String(Math.floor(c.now / 1000)) },
  {
    name: 'lock.reason',
    from: 'connect',
    doc: 'the reason of the lock found by `client is locked` / `auth is locked` (else of the client lock)',
    get: (c) => (c.lastLock ?? lockFact(c, 'client')?.entry)?.reason ?? '',
  },
  { name: 'spf.explanation', from: 'mail', doc: 'the SPF explanation (exp=) or why', get: (c) => spfFact(c).explanation ?? '' },
];

export const VARIABLES: ReadonlyMap<string, VariableDef> = new Map(V.map((v) => [v.name, v]));

/** Field names usable as {variables}: every field without an argument. */
export function fieldAsText(f: FieldDef, ctx: EvalContext): string {
  if (f.str) return f.str(ctx, '') ?? '';
  if (f.strs) return f.strs(ctx, '').join(',');
  if (f.num) {
    const n = f.num(ctx);
    return n === undefined ? '' : String(n);
  }
  if (f.bool) return f.bool(ctx, '') ? 'true' : 'false';
  return '';
}
