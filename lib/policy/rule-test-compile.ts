/**
 * Turns a `test "name" { ... }` block into a Scenario and the expected verdict. Statements (one per line
 * or separated by `;`):
 *   client 192.0.2.1 [port 4000]    client.name mx.example.net    destination 198.51.100.25 [port 25]
 *   helo "name"    tls    auth alice    sender a@b.example (or "" for <>)    rcpt x@y, z@y
 *   header "Subject" "hello"    size 12KB    declared-size 10MB    time 2026-01-05T03:00:00Z
 *   spf fail    dnsbl zen [127.0.0.2 | failed]    virus "Eicar-Test-Signature"
 *   spam 7.5 [threshold 5] [symbols A, B]    filter 1    scanner clamd failed ["reason"] | skipped
 *   locked client 192.0.2.1 [reason "text"]    locked auth alice    locks failed    fact "key" "value"
 *   expect reject [550 [5.7.1]] ["text"] at helo    expect continue    expect header "X" "v" | ~ /re/    expect tag t
 */
import RE2 from 're2';
import { isRuleStage, RULE_STAGES, type RuleStage } from '../core/stage.js';
import type { SourceLocation, VerdictAction } from '../core/verdict.js';
import type { TestNode, TestStatement } from './rule-ast.js';
import { parseIp } from './ip-match.js';
import type { CompiledList } from './rule-lists.js';
import { SPF_RESULTS } from './providers.js';
import type { CompiledTest, Scenario, TestExpectation } from './rule-scenario-types.js';
import { didYouMean, spanLocation, type DiagnosticSink } from './rule-source.js';
import { isParsedNumber, parseNumberWithUnit } from './rule-values.js';

export type { CompiledTest };

const KEYWORDS = [
  'client', 'client.name', 'destination', 'door', 'earlytalker', 'helo', 'ehlo', 'tls', 'auth', 'sender', 'rcpt', 'header', 'size', 'declared-size',
  'time', 'spf', 'dnsbl', 'dnswl', 'rhsbl', 'virus', 'spam', 'filter', 'scanner', 'locked', 'locks', 'fact', 'expect',
];
const DOORS = ['intercept', 'milter', 'filter', 'policy', 'test'] as const;
const ACTIONS: readonly VerdictAction[] = ['continue', 'accept', 'reject', 'tempfail', 'discard', 'quarantine'];

type Arg = TestStatement['args'][number];

export function compileTest(t: TestNode, sink: DiagnosticSink, _lists: ReadonlyMap<string, CompiledList>): CompiledTest | undefined {
  const before = sink.count;
  const sc: Scenario = {};
  const facts: Record<string, string> = {};
  let expect: TestExpectation | undefined;
  const headerExpects: { name: string; value?: string; regex?: { pattern: string; flags: string } }[] = [];
  const tagExpects: string[] = [];
  for (const st of t.statements) {
    // `spf = fail` and `spf=fail` read like `spf fail`.
    const a = st.args[0]?.kind === 'punct' && st.args[0].text === '=' ? st.args.slice(1) : st.args;
    const bad = (msg: string, hint: string, at: Arg | TestStatement = st): void => sink.error('rule/bad-test', msg, at.span, hint);
    const need = (n: number, usage: string): boolean => {
      if (a.length < n) {
        bad(`\`${st.keyword}\` needs ${n === 1 ? 'a value' : `${n} values`}`, `usage: ${usage}`);
        return false;
      }
      return true;
    };
    const word = (i: number): string => a[i]?.text ?? '';
    switch (st.keyword) {
      case 'client': {
        if (!need(1, 'client 192.0.2.1 [port 4000]')) break;
        if (!parseIp(word(0))) bad(`${JSON.stringify(word(0))} is not an IP address`, 'client 192.0.2.1 or client 2001:db8::1', a[0] as Arg);
        sc.client = word(0);
        if (word(1) === 'port') {
          const p = Number(word(2));
          if (!Number.isInteger(p) || p < 0 || p > 65535) bad('bad port', 'client 192.0.2.1 port 4000', (a[2] ?? a[1]) as Arg);
          else sc.clientPort = p;
        } else if (a.length > 1) bad(`unexpected ${JSON.stringify(word(1))}`, 'client 192.0.2.1 [port 4000]', a[1] as Arg);
        break;
      }
      case 'client.name':
        if (need(1, 'client.name mx.example.net')) sc.clientName = word(0);
        break;
      case 'destination': {
        if (!need(1, 'destination 198.51.100.25 [port 25]')) break;
        if (!parseIp(word(0))) bad(`${JSON.stringify(word(0))} is not an IP address`, 'destination 198.51.100.25 [port 25]', a[0] as Arg);
        sc.destination = word(1) === 'port' ? `${word(0).includes(':') ? `[${word(0)}]` : word(0)}:${word(2)}` : word(0);
        break;
      }
      case 'helo':
      case 'ehlo':
        if (need(1, 'helo "mail.example.com"')) sc.helo = word(0);
        break;
      case 'tls':
        sc.tls = a.length === 0 || ['on', 'yes', 'true'].includes(word(0));
        break;
      case 'door':
        if (!need(1, 'door milter')) break;
        if (!(DOORS as readonly string[]).includes(word(0))) bad(`${JSON.stringify(word(0))} is not a door`, `doors: ${DOORS.join(', ')}`, a[0] as Arg);
        facts['door'] = word(0);
        break;
      case 'earlytalker':
        facts['earlytalker'] = 'yes';
        break;
      case 'auth':
        if (need(1, 'auth alice')) sc.auth = word(0);
        break;
      case 'sender': {
        // `sender <>`, `sender <a@b>`, `sender a@b`, `sender ""`: the lexer splits < and > off.
        const words = a.filter((x) => !(x.kind === 'punct' && (x.text === '<' || x.text === '>')));
        sc.sender = words.length === 0 ? '' : (words[0] as Arg).text;
        break;
      }
      case 'rcpt':
      case 'recipients':
        if (!need(1, 'rcpt user@example.com, other@example.com')) break;
        sc.recipients = [...(sc.recipients ?? []), ...a.filter((x) => x.kind !== 'punct').map((x) => x.text)];
        break;
      case 'header':
        if (!need(2, 'header "Subject" "hello"')) break;
        sc.headers = [...(sc.headers ?? []), [word(0), word(1)]];
        break;
      case 'size':
      case 'declared-size':
      case 'size.declared': {
        if (!need(1, `${st.keyword} 10MB`)) break;
        const p = parseNumberWithUnit(word(0));
        if (!p || !isParsedNumber(p) || p.unit === 'duration') {
          bad(`${JSON.stringify(word(0))} is not a size`, 'e.g. 10MB, 512KB, 1000', a[0] as Arg);
          break;
        }
        if (st.keyword === 'size') sc.size = Math.round(p.value);
        else sc.declaredSize = Math.round(p.value);
        break;
      }
      case 'time':
        if (!need(1, 'time 2026-01-05T03:00:00Z')) break;
        if (Number.isNaN(Date.parse(word(0)))) bad(`${JSON.stringify(word(0))} is not a time`, 'ISO 8601, e.g. 2026-01-05T03:00:00Z', a[0] as Arg);
        facts['time'] = word(0);
        break;
      case 'spf':
        if (!need(1, 'spf fail')) break;
        if (!(SPF_RESULTS as readonly string[]).includes(word(0))) bad(`${JSON.stringify(word(0))} is not an SPF result`, didYouMean(word(0), SPF_RESULTS) ?? `results: ${SPF_RESULTS.join(', ')}`, a[0] as Arg);
        facts['spf'] = word(0);
        break;
      case 'dnsbl':
      case 'dnswl':
      case 'rhsbl': {
        if (!need(1, `${st.keyword} zen [127.0.0.2 | failed | none]`)) break;
        const v = a.length > 1 ? word(1) : '127.0.0.2';
        if (v !== 'failed' && v !== 'none' && !parseIp(v)) bad(`${JSON.stringify(v)} is not a DNS list answer`, 'an address like 127.0.0.2, or failed, or none', a[1] as Arg);
        facts[`dnsbl.${word(0)}`] = v;
        break;
      }
      case 'virus':
        facts['virus'] = a.length > 0 ? word(0) : 'Eicar-Test-Signature';
        break;
      case 'spam': {
        if (!need(1, 'spam 7.5 [threshold 5] [symbols A, B]')) break;
        if (!Number.isFinite(Number(word(0)))) bad('spam needs a score', 'spam 7.5 [threshold 5]', a[0] as Arg);
        facts['spam.score'] = word(0);
        for (let i = 1; i < a.length; i++) {
          if (word(i) === 'threshold') facts['spam.threshold'] = word(++i);
          else if (word(i) === 'symbols') {
            facts['spam.symbols'] = a.slice(i + 1).filter((x) => x.kind !== 'punct').map((x) => x.text).join(',');
            break;
          } else bad(`unexpected ${JSON.stringify(word(i))}`, 'spam 7.5 [threshold 5] [symbols A, B]', a[i] as Arg);
        }
        break;
      }
      case 'filter':
        if (need(1, 'filter 1')) facts['filter.code'] = word(0);
        break;
      case 'scanner': {
        if (!need(2, 'scanner clamd failed ["reason"]  or  scanner clamd skipped')) break;
        if (word(1) === 'failed') facts[`scan.failed.${word(0)}`] = a.length > 2 ? word(2) : 'failed';
        else if (word(1) === 'skipped') facts['scan.skipped'] = [facts['scan.skipped'], word(0)].filter(Boolean).join(',');
        else bad(`expected failed or skipped, not ${JSON.stringify(word(1))}`, 'scanner clamd failed  or  scanner clamd skipped', a[1] as Arg);
        break;
      }
      case 'locked': {
        if (!need(2, 'locked client 192.0.2.1 [reason "text"]  or  locked auth alice')) break;
        if (word(0) !== 'client' && word(0) !== 'auth') {
          bad('expected client or auth after locked', 'locked client 192.0.2.1 [reason "text"]', a[0] as Arg);
          break;
        }
        const reason = word(2) === 'reason' ? word(3) : 'locked';
        sc.locks = [...(sc.locks ?? []), { key: `${word(0)}:${word(1)}`, reason }];
        break;
      }
      case 'locks':
        facts['locks'] = 'failed';
        break;
      case 'fact':
        if (need(2, 'fact "spf" "fail"')) facts[word(0)] = word(1);
        break;
      case 'expect': {
        if (!need(1, 'expect reject 550 5.7.1 at helo')) break;
        if (word(0) === 'header') {
          if (!need(2, 'expect header "Name" ["value" | ~ /regex/]')) break;
          const r = a[2]?.text === '~' ? a[3] : undefined;
          if (r && r.kind === 'regex') {
            const flags = (r as { flags?: string }).flags ?? '';
            try {
              new RE2(r.text, flags);
            } catch (e) {
              bad(`invalid regex: ${(e as Error).message}`, 'RE2 syntax', r);
            }
            headerExpects.push({ name: word(1), regex: { pattern: r.text, flags } });
          } else headerExpects.push(a.length > 2 ? { name: word(1), value: word(2) } : { name: word(1) });
          break;
        }
        if (word(0) === 'tag') {
          if (need(2, 'expect tag NAME')) tagExpects.push(word(1));
          break;
        }
        if (expect) {
          bad('a test has one verdict expectation', 'split it into two tests', st);
          break;
        }
        const action = word(0) as VerdictAction;
        if (!ACTIONS.includes(action)) {
          bad(`unknown verdict ${JSON.stringify(word(0))}`, didYouMean(word(0), ACTIONS) ?? `verdicts: ${ACTIONS.join(', ')}`, a[0] as Arg);
          break;
        }
        let i = 1;
        let code: number | undefined;
        let enhanced: string | undefined;
        let text: string | undefined;
        if (a[i] && /^\d{3}$/.test(word(i))) code = Number(word(i++));
        if (a[i] && /^\d\.\d{1,3}\.\d{1,3}$/.test(word(i))) enhanced = word(i++);
        if (a[i]?.quoted) text = word(i++);
        let stage: RuleStage = 'eom';
        if (word(i) === 'at') {
          const s = word(i + 1);
          if (!isRuleStage(s)) bad(`unknown stage ${JSON.stringify(s)}`, didYouMean(s, RULE_STAGES) ?? `stages: ${RULE_STAGES.join(', ')}`, (a[i + 1] ?? a[i]) as Arg);
          else stage = s;
          i += 2;
        } else if (action !== 'continue') {
          bad('say at which stage the verdict is expected', `expect ${action}${code ? ` ${code}` : ''} at helo`, st);
        }
        if (i < a.length) bad(`unexpected ${JSON.stringify(word(i))}`, 'expect ACTION [CODE [ENHANCED]] ["text"] at STAGE', a[i] as Arg);
        expect = { action, stage, headers: [], tags: [], ...(code !== undefined ? { code } : {}), ...(enhanced !== undefined ? { enhanced } : {}), ...(text !== undefined ? { text } : {}) };
        break;
      }
      default:
        bad(`unknown test statement \`${st.keyword}\``, didYouMean(st.keyword, KEYWORDS) ?? `statements: ${KEYWORDS.join(', ')}`);
    }
  }
  if (!expect && headerExpects.length === 0 && tagExpects.length === 0 && sink.count === before) {
    sink.error('rule/bad-test', `test ${JSON.stringify(t.name)} expects nothing`, t.span, 'add e.g. expect reject 550 at helo, or expect continue');
  }
  if (sink.count > before) return undefined;
  if (Object.keys(facts).length > 0) sc.facts = facts;
  const base: TestExpectation = expect ?? { action: 'continue', stage: 'eom', headers: [], tags: [] };
  const location: SourceLocation = spanLocation(t.span);
  return { name: t.name, location, scenario: sc, expect: { ...base, headers: headerExpects, tags: tagExpects } };
}
