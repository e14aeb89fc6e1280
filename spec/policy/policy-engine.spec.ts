import assert from 'node:assert/strict';
import fc from 'fast-check';
import { replyProblem } from '../../lib/core/smtp-reply.js';
import type { RuleStage } from '../../lib/core/stage.js';
import { acceptRecipient, reduceTransaction, startTransaction, type Transaction } from '../../lib/core/transaction.js';
import type { Logger } from '../../lib/core/logger.js';
import { compileRules, MemoryLockStore, PolicyEngine } from '../../lib/policy/index.js';
import type { DnsListProvider, PolicyProviders, SpfProvider } from '../../lib/policy/providers.js';

const NOW = Date.UTC(2026, 0, 5, 12);
const clock = { now: () => NOW };

function rules(text: string) {
  return compileRules([{ file: 't.rules', text }]);
}

function tx(client = '203.0.113.9', port = 41000): Transaction {
  return startTransaction({ stage: 'connect', door: 'intercept', client: { ip: client, port }, destination: { ip: '198.51.100.25', port: 25 }, destinationSource: 'tproxy' }, 'sess-1', NOW - 5000);
}
function helo(t: Transaction, name: string) {
  return reduceTransaction(t, { stage: 'helo', name, extended: true });
}
function mail(t: Transaction, from: string, size?: number) {
  return reduceTransaction(t, { stage: 'mail', address: from, params: size ? { SIZE: String(size) } : {} });
}
function rcpt(t: Transaction, to: string) {
  return reduceTransaction(t, { stage: 'rcpt', address: to });
}

function providers(extra: Partial<PolicyProviders> = {}): PolicyProviders & { locks: MemoryLockStore } {
  return { locks: new MemoryLockStore({ clock }), clock, ...extra } as PolicyProviders & { locks: MemoryLockStore };
}

describe('policy/policy-engine', () => {
  it('first terminal action wins; non-terminal actions before it accumulate', async () => {
    const rs = rules(`
      rule t1 at mail: => tag seen
      rule h1 at mail: => add header "X-A" "1"
      rule r1 at mail: sender ~ /@spam\\.example$/ => reject 550 5.7.1 "no {sender}"
      rule r2 at mail: => reject 554 "never reached"
    `);
    const e = new PolicyEngine(rs, providers());
    const v = await e.evaluate('mail', mail(helo(tx(), 'mx'), 'bob@spam.example'));
    assert.equal(v.action, 'reject');
    assert.deepEqual(v.reply, { code: 550, enhanced: '5.7.1', lines: ['no bob@spam.example'] });
    assert.deepEqual(v.mutations, [{ kind: 'add', name: 'X-A', value: '1' }]);
    assert.deepEqual(v.effects, [{ kind: 'tag', tag: 'seen', rule: 't1' }]);
    assert.deepEqual(v.hits.map((h) => h.rule), ['t1', 'h1', 'r1']);
    assert.match(v.hits[2]?.because ?? '', /sender ~ .*"bob@spam.example"/);
  });

  it('returns continue (and the shared constant) when no rule fires, and continue for stages without rules', async () => {
    const rs = rules('rule r at helo: helo == "localhost" => reject');
    const e = new PolicyEngine(rs, providers());
    const v = await e.evaluate('helo', helo(tx(), 'mx.example.net'));
    assert.equal(v.action, 'continue');
    assert.deepEqual(v.hits, []);
    assert.equal((await e.evaluate('eom', tx())).action, 'continue');
  });

  it('uses the default reject and tempfail replies', async () => {
    const rs = rules('rule a at connect: client == 203.0.113.9 => reject\nrule b at connect: => tempfail');
    const e = new PolicyEngine(rs, providers());
    assert.deepEqual((await e.evaluate('connect', tx())).reply, { code: 550, enhanced: '5.7.1', lines: ['Rejected by policy'] });
    assert.deepEqual((await e.evaluate('connect', tx('192.0.2.7'))).reply, { code: 451, enhanced: '4.7.1', lines: ['Temporarily refused by policy, try again later'] });
  });

  it('matches IPv4 and IPv6 CIDR lists, including IPv4-mapped clients', async () => {
    const rs = rules(`
      list nets = 10.0.0.0/8, 192.0.2.128/25, 2001:db8::/32, ::1
      rule in-nets at connect: client in nets => accept
    `);
    const e = new PolicyEngine(rs, providers());
    const act = async (ip: string) => (await e.evaluate('connect', tx(ip))).action;
    assert.equal(await act('10.1.2.3'), 'accept');
    assert.equal(await act('11.0.0.1'), 'continue');
    assert.equal(await act('192.0.2.200'), 'accept');
    assert.equal(await act('192.0.2.100'), 'continue');
    assert.equal(await act('2001:db8:ffff::1'), 'accept');
    assert.equal(await act('2001:db9::1'), 'continue');
    assert.equal(await act('::1'), 'accept');
    assert.equal(await act('::ffff:10.9.9.9'), 'accept');
  });

  it('interpolates variables and neutralises CR/LF from client text in replies and headers', async () => {
    const rs = rules(`
      rule r at rcpt: rcpt ~ /evil/ => reject 550 5.1.1 "<{rcpt}> refused by {proxy.name}"
      rule h at rcpt: => add header "X-Rcpt" "{rcpt}"
    `);
    const e = new PolicyEngine(rs, providers(), { proxyName: 'gw.example' });
    const v = await e.evaluate('rcpt', rcpt(mail(helo(tx(), 'h'), 'a@b'), 'evil\r\n250 ok@x'));
    assert.deepEqual(v.reply?.lines, ['<evil  250 ok@x> refused by gw.example']);
    const v2 = await e.evaluate('rcpt', rcpt(mail(helo(tx(), 'h'), 'a@b'), 'x\r\nBcc: y'));
    assert.deepEqual(v2.mutations, [{ kind: 'add', name: 'X-Rcpt', value: 'x  Bcc: y' }]);
  });

  it('renders the smtp-gated X-NAT-Received header in generic and ip-only forms', async () => {
    const rs = rules(`
      rule nat at data: => add header "X-NAT-Received" "from [{client.ip}]:{client.port} [ident-empty]\\n\\tby {proxy.name} with TPROXY id {session.start}.{pid}"
      rule nat-ip at data: => add header "X-NAT-Received" "{client.ip}"
    `);
    const e = new PolicyEngine(rs, providers(), { proxyName: 'gw.example' });
    const v = await e.evaluate('data', tx('203.0.113.9', 41000));
    assert.deepEqual(v.mutations[0], { kind: 'add', name: 'X-NAT-Received', value: `from [203.0.113.9]:41000 [ident-empty]\n\tby gw.example with TPROXY id ${Math.floor((NOW - 5000) / 1000)}.${process.pid}` });
    assert.deepEqual(v.mutations[1], { kind: 'add', name: 'X-NAT-Received', value: '203.0.113.9' });
  });

  it('locks the client, emits the hook once per new lock with the smtp-gated environment, and reports the lock reason', async () => {
    const rs = rules(`
      rule locked at connect: client is locked => reject 554 5.7.1 "locked: {lock.reason}"
      rule bad-helo at helo: helo ~ /^localhost$/i => reject 550 5.7.1 "Forbidden HELO/EHLO" lock 1h reason "REGEX_HELO" hook notify
    `);
    const p = providers();
    const e = new PolicyEngine(rs, p, { proxyName: 'gw' });
    const v1 = await e.evaluate('helo', helo(tx(), 'LOCALHOST'));
    assert.equal(v1.action, 'reject');
    const hooks = v1.effects.filter((x) => x.kind === 'hook');
    assert.equal(hooks.length, 1);
    const env = (hooks[0] as { env: Record<string, string> }).env;
    assert.equal(env['FOUND'], 'REGEX_HELO');
    assert.equal(env['SOURCE_IP'], '203.0.113.9');
    assert.equal(env['SOURCE_PORT'], '41000');
    assert.equal(env['TARGET_IP'], '198.51.100.25');
    assert.equal(env['TARGET_PORT'], '25');
    assert.equal(env['HELO'], 'LOCALHOST');
    assert.equal(env['LOCK_DURATION'], '3600');
    assert.equal(env['TRANSACTION'], '1');
    assert.equal(env['SPAM_SCORE'], '0.000');
    assert.equal(env['PROXY_NAME'], 'gw');
    assert.deepEqual(v1.effects.find((x) => x.kind === 'lock'), { kind: 'lock', subject: 'client', key: 'client:203.0.113.9', durationMs: 3_600_000, reason: 'REGEX_HELO', rule: 'bad-helo' });
    // Second offence: the lock exists already, so no hook.
    const v2 = await e.evaluate('helo', helo(tx(), 'localhost'));
    assert.equal(v2.effects.filter((x) => x.kind === 'hook').length, 0);
    // The next connection is refused with the reason.
    const v3 = await e.evaluate('connect', tx());
    assert.deepEqual(v3.reply, { code: 554, enhanced: '5.7.1', lines: ['locked: REGEX_HELO'] });
    assert.equal((await e.evaluate('connect', tx('192.0.2.1'))).action, 'continue');
  });

  it('does not lock allow-listed clients (CIDR allow entries) and then runs no hook', async () => {
    const rs = rules('rule l at helo: => reject lock 1h reason "X" hook h');
    const p = providers();
    await p.locks.allow('client:203.0.113.0/24', 'ours');
    const v = await new PolicyEngine(rs, p).evaluate('helo', helo(tx(), 'x'));
    assert.equal(v.action, 'reject');
    assert.deepEqual(v.effects, [], 'neither a hook nor a lock effect for an allow-listed client');
    assert.equal(await p.locks.isLocked('client:203.0.113.9'), undefined);
  });

  it('SPF and DNS list answers are asked lazily, cached per session, and failures are testable values', async () => {
    let spfCalls = 0;
    const spf: SpfProvider = { check: async (q) => (spfCalls++, { result: q.sender.endsWith('@fail.example') ? 'fail' : 'pass', identity: 'mailfrom' }) };
    const dnsLists: DnsListProvider = {
      zones: new Set(['zen', 'broken']),
      lookupAddress: async (zone, ip) => (zone === 'broken' ? Promise.reject(new Error('SERVFAIL')) : { zone, listed: ip === '203.0.113.9', codes: ip === '203.0.113.9' ? ['127.0.0.2'] : [], reason: 'https://zen.example/query/ip\r\nX' }),
      lookupDomain: async (zone) => ({ zone, listed: false, codes: [] }),
    };
    const rs = rules(`
      rule spf-fail at mail: spf == fail => reject 550 5.7.23 "SPF {spf}"
      rule bl at rcpt: dnsbl(zen) == 127.0.0.2 => reject 554 5.7.1 "listed ({dnsbl(zen).code}: {dnsbl(zen).reason})"
      rule bl-broken at rcpt: dnsbl(broken) failed => tag dns-broken
    `, );
    const e = new PolicyEngine(rs, providers({ spf, dnsLists }));
    const base = helo(tx('192.0.2.5'), 'h');
    const v = await e.evaluate('mail', mail(base, 'x@fail.example'));
    assert.deepEqual(v.reply, { code: 550, enhanced: '5.7.23', lines: ['SPF fail'] });
    const m = mail(base, 'x@ok.example');
    assert.equal((await e.evaluate('mail', m)).action, 'continue');
    const r = await e.evaluate('rcpt', rcpt(m, 'a@b'));
    assert.deepEqual(r.effects, [{ kind: 'tag', tag: 'dns-broken', rule: 'bl-broken' }]);
    assert.equal(spfCalls, 2);
    const bad = await e.evaluate('rcpt', rcpt(mail(helo(tx(), 'h'), 'x@ok.example'), 'a@b'));
    assert.deepEqual(bad.reply, { code: 554, enhanced: '5.7.1', lines: ['listed (127.0.0.2: https://zen.example/query/ip  X)'] });
  });

  it('a provider that hangs past the timeout yields the error value (spf == temperror)', async () => {
    const spf: SpfProvider = { check: () => new Promise(() => undefined) };
    const rs = rules('rule t at mail: spf == temperror => tempfail 451 4.7.24 "SPF temporary error"');
    const e = new PolicyEngine(rs, providers({ spf }), { providerTimeoutMs: 50 });
    const t0 = Date.now();
    const v = await e.evaluate('mail', mail(helo(tx(), 'h'), 'a@b.example'));
    assert.equal(v.action, 'tempfail');
    assert.ok(Date.now() - t0 < 1000);
  });

  it('a lock store that is down is a value (`locks failed`), not an exception: asynchronous and synchronous lookups', async () => {
    const rs = rules('rule l at connect: client is locked => reject\nrule f at connect: locks failed => tempfail 421 4.3.0 "try later"');
    const failures: Record<string, unknown>[] = [
      { isLocked: () => Promise.reject(new Error('redis down')), isLockedNow: undefined },
      {
        isLocked: () => Promise.reject(new Error('database closed')),
        isLockedNow: () => {
          throw new Error('database closed');
        },
      },
    ];
    for (const failure of failures) {
      const p = providers();
      Object.assign(p.locks, failure);
      const v = await new PolicyEngine(rs, p).evaluate('connect', tx());
      assert.deepEqual(v.reply, { code: 421, enhanced: '4.3.0', lines: ['try later'] });
    }
  });

  it('a lock is read synchronously where the store can (no promise, no timer), and through isLocked where it cannot', async () => {
    const rs = rules('rule l at connect: client is locked => reject 554 5.7.1 "locked: {lock.reason}"');
    for (const sync of [true, false]) {
      const p = providers();
      await p.locks.lock('client:192.0.2.1', 60_000, 'worm', 'manual');
      let asyncReads = 0;
      const isLocked = p.locks.isLocked.bind(p.locks);
      Object.assign(p.locks, { isLocked: (k: string) => (asyncReads++, isLocked(k)), ...(sync ? {} : { isLockedNow: undefined }) });
      const v = await new PolicyEngine(rs, p).evaluate('connect', tx('192.0.2.1'));
      assert.deepEqual(v.reply, { code: 554, enhanced: '5.7.1', lines: ['locked: worm'] });
      assert.equal(asyncReads, sync ? 0 : 1);
    }
  });

  it('a lock action against a store that is down still answers, without hook or lock effect, and logs a warning', async () => {
    const warned: object[] = [];
    const logger: Logger = { debug: () => undefined, info: () => undefined, warn: (o) => void warned.push(o), error: () => undefined, child: () => logger };
    const p = providers();
    p.locks.lock = () => Promise.reject(new Error('redis down'));
    const rs = rules('rule l at helo: => reject 550 5.7.1 "no" lock 1h reason "X" hook h tag t');
    const v = await new PolicyEngine(rs, p, { logger }).evaluate('helo', helo(tx(), 'x'));
    assert.equal(v.action, 'reject');
    assert.deepEqual(v.effects, [{ kind: 'tag', tag: 't', rule: 'l' }]);
    assert.equal(warned.length, 1);
  });

  it('turns an unexpected exception into the generic tempfail and logs it', async () => {
    const logged: object[] = [];
    const logger: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: (o) => void logged.push(o), child: () => logger };
    const rs = rules('rule x at helo: helo ~ /a/ => reject');
    const e = new PolicyEngine(rs, providers(), { logger });
    const broken = { ...helo(tx(), 'a'), session: null } as unknown as Transaction;
    const v = await e.evaluate('helo', broken);
    assert.equal(v.action, 'tempfail');
    assert.deepEqual(v.reply, { code: 451, enhanced: '4.3.0', lines: ['Temporary local problem, please try again later'] });
    assert.equal(logged.length, 1);
  });

  it('numeric comparisons with units, counts and scanner results', async () => {
    const rs = rules(`
      rule big at mail: size.declared > 10MB => reject 552 5.3.4 "too big"
      rule many at rcpt: rcpts.count >= 2 => tempfail 452 4.5.3 "too many recipients"
      rule virus at eom: virus => reject 550 5.7.1 "Malware found ({virus.name})"
      rule spam at eom: spam.score >= 7.5 => quarantine "spam {spam.score}"
      rule failed at eom: scanner(clamd) failed => tempfail 451 4.7.1 "Scanner failed"
    `);
    const e = new PolicyEngine(rs, providers());
    const base = helo(tx(), 'h');
    assert.equal((await e.evaluate('mail', mail(base, 'a@b', 11 * 1024 * 1024))).reply?.code, 552);
    assert.equal((await e.evaluate('mail', mail(base, 'a@b', 10 * 1024 * 1024))).action, 'continue');
    let t = mail(base, 'a@b');
    t = acceptRecipient(rcpt(t, 'x@y'));
    t = acceptRecipient(rcpt(t, 'z@y'));
    assert.equal((await e.evaluate('rcpt', rcpt(t, 'w@y'))).reply?.code, 452);
    const withScan = (results: object) => reduceTransaction(t, { stage: 'scan', results } as never);
    assert.deepEqual((await e.evaluate('eom', withScan({ virus: { found: true, name: 'Eicar-Test', scanner: 'clamd' } }))).reply?.lines, ['Malware found (Eicar-Test)']);
    const q = await e.evaluate('eom', withScan({ spam: { score: 8, threshold: 5, symbols: [], isSpam: true } }));
    assert.equal(q.action, 'quarantine');
    assert.equal(q.reason, 'spam 8');
    assert.equal((await e.evaluate('eom', withScan({ failed: { clamd: 'timeout' } }))).action, 'tempfail');
  });

  it('reads headers and multi-valued recipient lists (any matches)', async () => {
    const rs = rules(`
      rule subj at eoh: header("Subject") ~ /viagra/i => reject 550 5.7.1 "no"
      rule hdr at header: header.name == "X-Mailer" and header.value ~ /spamtool/ => discard
      rule list at data: rcpts in ("@blocked.example") => reject 550 5.7.1 "blocked domain"
    `);
    const e = new PolicyEngine(rs, providers());
    let t = mail(helo(tx(), 'h'), 'a@b');
    t = acceptRecipient(rcpt(t, 'ok@fine.example'));
    assert.equal((await e.evaluate('data', t)).action, 'continue');
    const t2 = acceptRecipient(rcpt(t, 'Someone@Blocked.Example'));
    assert.equal((await e.evaluate('data', t2)).action, 'reject');
    const h1 = reduceTransaction(t, { stage: 'header', name: 'X-Mailer', value: 'spamtool 1.0' });
    assert.equal((await e.evaluate('header', h1)).action, 'discard');
    const h2 = reduceTransaction(reduceTransaction(t, { stage: 'header', name: 'subject', value: 'cheap VIAGRA' }), { stage: 'eoh' });
    assert.equal((await e.evaluate('eoh', h2)).action, 'reject');
  });

  it('insert header puts it first; remove header changes every occurrence to empty, last first', async () => {
    const rs = rules('rule h at eom: => insert header "X-First" "1" remove header "X-Spam-Flag" add header "X-Last" "2"');
    let t = mail(helo(tx(), 'h'), 'a@b');
    for (const [n, v] of [['X-Spam-Flag', 'YES'], ['Subject', 's'], ['x-spam-flag', 'YES']] as const) t = reduceTransaction(t, { stage: 'header', name: n, value: v });
    const v = await new PolicyEngine(rs, providers()).evaluate('eom', t);
    assert.deepEqual(v.mutations, [
      { kind: 'insert', name: 'X-First', value: '1', index: 0 },
      { kind: 'add', name: 'X-Last', value: '2' },
      { kind: 'change', name: 'X-Spam-Flag', value: '', index: 2 },
      { kind: 'change', name: 'X-Spam-Flag', value: '', index: 1 },
    ]);
  });

  it('a hostile regex input returns fast because RE2 runs in linear time', async () => {
    const rs = rules('rule r at helo: helo ~ /(a+)+$/ => reject\nrule s at helo: helo ~ /^(a|aa)+b$/ => reject');
    const e = new PolicyEngine(rs, providers());
    const t0 = performance.now();
    const v = await e.evaluate('helo', helo(tx(), 'a'.repeat(100_000) + '!'));
    assert.equal(v.action, 'continue');
    assert.ok(performance.now() - t0 < 500, 'took too long');
  });

  it('explain lists every rule considered, matched or not', async () => {
    const rs = rules('rule a at helo: helo == "x" => tag a\nrule b at helo: helo ~ /^m/ => reject\nrule c at helo: => accept');
    const e = new PolicyEngine(rs, providers());
    const { verdict, considered } = await e.explain('helo', helo(tx(), 'mx'));
    assert.equal(verdict.action, 'reject');
    assert.deepEqual(considered.map((c) => [c.rule, c.matched]), [['a', false], ['b', true], ['c', false]]);
    assert.match(considered[0]?.because ?? '', /helo == "x": false, helo is "mx"/);
    assert.match(considered[2]?.because ?? '', /not reached/);
  });

  it('needs reports stages, headers, scan, spf and zones', () => {
    const rs = rules('rule a at mail: spf == fail and dnsbl(zen) => reject\nrule b at eom: virus => reject\nrule c at eoh: header("X") exists => tag x');
    assert.deepEqual([...rs.needs.stages].sort(), ['eoh', 'eom', 'mail'] as RuleStage[]);
    assert.equal(rs.needs.spf, true);
    assert.equal(rs.needs.scan, true);
    assert.equal(rs.needs.headers, true);
    assert.deepEqual([...rs.needs.dnsLists], ['zen']);
  });

  it('fetches the facts one rule may need in parallel (dnsbl(a) or dnsbl(b))', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const dnsLists: DnsListProvider = {
      zones: new Set(['a', 'b', 'c']),
      lookupAddress: async (zone) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 80));
        inFlight--;
        return { zone, listed: zone === 'c', codes: zone === 'c' ? ['127.0.0.2'] : [] };
      },
      lookupDomain: async (zone) => ({ zone, listed: false, codes: [] }),
    };
    const rs = rules('rule bl at connect: dnsbl(a) or dnsbl(b) or dnsbl(c) => reject 554 5.7.1 "listed"');
    const t0 = performance.now();
    const v = await new PolicyEngine(rs, providers({ dnsLists })).evaluate('connect', tx());
    assert.equal(v.action, 'reject');
    assert.equal(maxInFlight, 3);
    assert.ok(performance.now() - t0 < 200, 'lookups ran one after another');
  });

  it('stops waiting for providers once the evaluation budget is spent', async () => {
    const dnsLists: DnsListProvider = {
      zones: new Set(['a', 'b']),
      lookupAddress: (zone) => new Promise((r) => setTimeout(() => r({ zone, listed: false, codes: [] }), 60)),
      lookupDomain: async (zone) => ({ zone, listed: false, codes: [] }),
    };
    const rs = rules('rule a at connect: dnsbl(a) failed => tag a-failed\nrule b at connect: dnsbl(b) failed => tag b-failed');
    const v = await new PolicyEngine(rs, providers({ dnsLists }), { providerTimeoutMs: 1000, evaluationBudgetMs: 30 }).evaluate('connect', tx());
    assert.deepEqual(v.effects.map((e) => (e as { tag: string }).tag), ['a-failed', 'b-failed']);
  });

  it('dryRunLocks computes the verdict and hook without writing the lock', async () => {
    const p = providers();
    const rs = rules('rule l at helo: => reject lock 1h reason "X" hook h');
    const v = await new PolicyEngine(rs, p, { dryRunLocks: true }).evaluate('helo', helo(tx(), 'x'));
    assert.equal(v.effects.filter((e) => e.kind === 'hook').length, 1);
    assert.equal(await p.locks.isLocked('client:203.0.113.9'), undefined);
  });

  it('needs.size: set by the size field, a {size} in a text, or an eom rule with an action hook; not by other eom rules', () => {
    assert.equal(rules('rule a at eom: size > 10MB => reject').needs.size, true);
    assert.equal(rules('rule a at eom: client is locked => tempfail 451 4.7.1 "{size} bytes"').needs.size, true);
    assert.equal(rules('rule a at eom: virus => tag v hook h').needs.size, true);
    assert.equal(rules('rule a at data: => add header "X-T" "x"\nrule b at eom: client is locked => tempfail\nrule c at eom: spam.score >= 7 => reject').needs.size, false);
    assert.equal(rules('rule a at mail: size.declared > 10MB => reject').needs.size, false, 'the declared size comes with MAIL');
  });

  it('needs.spf is set when only a reply text reads {spf}', () => {
    assert.equal(rules('rule a at mail: => tempfail 451 4.7.1 "{spf}"').needs.spf, true);
  });

  it('property: no client text makes evaluate reject or produce an invalid reply', async () => {
    const rs = rules(`
      list nets = 10.0.0.0/8, 2001:db8::/32
      list names = "localhost", @example.com
      rule c at connect: client in nets or client.name ~ /^dyn/ => tag c
      rule h at helo: helo ~ /^(localhost|\\[?[0-9.]+\\]?)$/i or helo in names => reject 550 5.7.1 "Bad HELO {helo} from {client}"
      rule m at mail: sender ~ /@(spam|junk)\\./ or sender in names => reject 550 5.7.1 "<{sender}> refused"
      rule r at rcpt: rcpt !~ /@ours\\.example$/ => reject 554 5.7.1 "relay to <{rcpt}> denied for {helo}"
      rule d at data: => add header "X-Trace" "{client.ip} {helo} {sender}"
    `);
    const e = new PolicyEngine(rs, providers());
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 60 }), async (h, addr, ip) => {
        let t = startTransaction({ stage: 'connect', door: 'milter', client: { ip, port: 1 } }, 's', NOW);
        for (const [stage, next] of [
          ['connect', t],
          ['helo', (t = reduceTransaction(t, { stage: 'helo', name: h, extended: false }))],
          ['mail', (t = reduceTransaction(t, { stage: 'mail', address: addr }))],
          ['rcpt', (t = reduceTransaction(t, { stage: 'rcpt', address: addr + h }))],
          ['data', (t = acceptRecipient(t))],
        ] as [RuleStage, Transaction][]) {
          const v = await e.evaluate(stage, next);
          if (v.reply) assert.equal(replyProblem(v.reply), undefined, JSON.stringify(v.reply));
          for (const m of v.mutations) assert.ok(!/[\r\n]/.test(m.value), m.value);
        }
      }),
      { numRuns: 300 },
    );
  });
});
