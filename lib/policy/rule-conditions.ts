/**
 * Checks one condition against the field table and compiles it to a closure. Type errors (a regex against
 * an address, a CIDR list against a text field, a size compared with a duration), unknown fields, lists
 * and zones, and fields not yet known at the rule's stage are reported here, all of them, with hints.
 */
import RE2 from 're2';
import type { RuleStage } from '../core/stage.js';
import type { CmpOp, ExprNode, FieldRef, ValueNode } from './rule-ast.js';
import type { EvalContext } from './rule-context.js';
import { availableAt, FIELDS, slotOf, type FieldDef } from './rule-fields.js';
import { parseIp, type ParsedIp } from './ip-match.js';
import { buildList, inAddressList, inLowerStringList, inStringList, type CompiledList } from './rule-lists.js';
import { didYouMean, type DiagnosticSink } from './rule-source.js';
import { isParsedNumber, parseNumberWithUnit } from './rule-values.js';

/** A compiled condition: `test` decides, `explain` says why in words (called only for traces and hits). */
export interface Cond {
  test(ctx: EvalContext): boolean;
  explain(ctx: EvalContext): string;
}

/** Regexes over the same field at the same stage share one combined RE2, tried first: one native call
 *  settles the common no-match case for all of them. Its answers are memoised across evaluations (bounded),
 *  since the same HELO or sender domain comes back again and again. */
export interface RegexGroup {
  readonly id: number;
  readonly patterns: string[];
  combined?: RE2;
  readonly cache: Map<string, boolean>;
}

/** Bounded: at most ~2048 × 128 characters per group (a few groups per ruleset: one per field and stage). */
const GROUP_CACHE_MAX = 2048;
const GROUP_CACHE_MAX_LEN = 128;

function groupTest(g: RegexGroup, value: string): boolean {
  const re = g.combined as RE2;
  if (value.length > GROUP_CACHE_MAX_LEN) return re.test(value);
  const hit = g.cache.get(value);
  if (hit !== undefined) return hit;
  const r = re.test(value);
  if (g.cache.size >= GROUP_CACHE_MAX) g.cache.clear();
  g.cache.set(value, r);
  return r;
}

export interface ConditionEnv {
  readonly sink: DiagnosticSink;
  readonly lists: ReadonlyMap<string, CompiledList>;
  readonly dnsLists?: ReadonlySet<string>;
  readonly groups: Map<string, RegexGroup>;
  /** Filled in: what the condition reads. */
  readonly uses: { spf: boolean; headers: boolean; scan: boolean; size: boolean; dnsLists: Set<string>; locks: boolean };
  /** Filled in per rule: readers of the provider facts the condition may need (see CompiledRule.prefetch). */
  readonly prefetch: ((ctx: EvalContext) => unknown)[];
}

const MAX_SHOWN = 80;
function show(v: string | undefined): string {
  if (v === undefined) return 'unset';
  return JSON.stringify(v.length > MAX_SHOWN ? v.slice(0, MAX_SHOWN) + '…' : v);
}

function fieldText(f: FieldRef): string {
  return f.arg === undefined ? f.name : `${f.name}(${/^[\w.-]+$/.test(f.arg) ? f.arg : JSON.stringify(f.arg)})`;
}

function valueText(v: ValueNode): string {
  switch (v.kind) {
    case 'word':
      return v.text;
    case 'string':
      return JSON.stringify(v.text);
    case 'regex':
      return `/${v.pattern}/${v.flags}`;
    case 'listref':
      return v.name;
    case 'inline':
      return `(${v.items.map((i) => (i.quoted ? JSON.stringify(i.text) : i.text)).join(', ')})`;
  }
}

const TYPE_WORDS: Record<string, string> = {
  address: 'an address',
  string: 'a text',
  number: 'a number',
  size: 'a size',
  duration: 'a duration',
  bool: 'a yes/no',
  enum: 'a keyword',
  dnslist: 'a DNS list',
  scanner: 'a scanner',
  lockstore: 'a lock store',
};


export function compileCondition(node: ExprNode, stage: RuleStage, env: ConditionEnv): Cond | undefined {
  switch (node.kind) {
    case 'and':
    case 'or': {
      const parts: Cond[] = [];
      let ok = true;
      for (const it of node.items) {
        const c = compileCondition(it, stage, env);
        if (c) parts.push(c);
        else ok = false;
      }
      if (!ok) return undefined;
      const n = parts.length;
      if (node.kind === 'and') {
        return {
          test: (c) => {
            for (let i = 0; i < n; i++) if (!(parts[i] as Cond).test(c)) return false;
            return true;
          },
          explain: (c) => {
            const failed = parts.find((p) => !p.test(c));
            return failed ? failed.explain(c) : parts.map((p) => p.explain(c)).join(' and ');
          },
        };
      }
      return {
        test: (c) => {
          for (let i = 0; i < n; i++) if ((parts[i] as Cond).test(c)) return true;
          return false;
        },
        explain: (c) => {
          const hit = parts.find((p) => p.test(c));
          return hit ? hit.explain(c) : parts.map((p) => p.explain(c)).join('; ');
        },
      };
    }
    case 'not': {
      const e = compileCondition(node.expr, stage, env);
      if (!e) return undefined;
      const inner = node.expr.kind === 'pred' && node.expr.pred === undefined ? fieldText(node.expr.field) : undefined;
      return { test: (c) => !e.test(c), explain: (c) => (inner !== undefined ? `not ${inner} (${e.explain(c)})` : `not (${e.explain(c)})`) };
    }
    case 'cmp':
      return compileCmp(node, stage, env);
    case 'pred':
      return compilePred(node, stage, env);
  }
}

function resolveField(ref: FieldRef, stage: RuleStage, env: ConditionEnv): FieldDef | undefined {
  const f = FIELDS.get(ref.name);
  const { sink } = env;
  if (!f) {
    const dotted = ref.name.match(/^header\.(.+)$/);
    const hint = dotted ? `headers are written header("${dotted[1]}")` : didYouMean(ref.name, FIELDS.keys()) ?? 'see docs/rules.md for the fields';
    sink.error('rule/unknown-field', `unknown field \`${ref.name}\``, ref.span, hint);
    return undefined;
  }
  if (f.arg && ref.arg === undefined && !f.argOptional) {
    const ex = f.arg === 'header' ? 'header("Subject")' : f.arg === 'zone' ? `${f.name}(zen)` : 'scanner(clamd)';
    sink.error('rule/missing-argument', `\`${f.name}\` needs an argument`, ref.span, `e.g. ${ex}`);
    return undefined;
  }
  if (!f.arg && ref.arg !== undefined) {
    sink.error('rule/unexpected-argument', `\`${f.name}\` takes no argument`, ref.span, `write just ${f.name}`);
    return undefined;
  }
  if (!availableAt(f, stage)) {
    const when = f.only ? `it is known only at the ${f.only.join(', ')} stage` : `it is known from the ${f.from} stage on`;
    sink.error('rule/field-stage', `\`${ref.name}\` is not known at the ${stage} stage`, ref.span, ref.name === 'rcpt' ? `${when}; at data and later use \`rcpts\`` : when);
    return undefined;
  }
  if (f.arg === 'zone' && ref.arg !== undefined && env.dnsLists && !env.dnsLists.has(ref.arg)) {
    sink.error('rule/unknown-zone', `unknown DNS list \`${ref.arg}\``, ref.span, didYouMean(ref.arg, env.dnsLists) ?? (env.dnsLists.size ? `configured lists: ${[...env.dnsLists].join(', ')}` : 'no DNS lists are configured (dns_lists in sluice.yaml)'));
    return undefined;
  }
  if (f.arg === 'header' && ref.arg !== undefined && !/^[\x21-\x39\x3b-\x7e]{1,100}$/.test(ref.arg)) {
    sink.error('rule/bad-header', `"${ref.arg.slice(0, 40)}" is not a header name`, ref.span, 'header names are printable ASCII without spaces or ":"');
    return undefined;
  }
  if (f.needs === 'spf') {
    env.uses.spf = true;
    env.prefetch.push((c) => f.str?.(c, ''));
  }
  if (f.dns && ref.arg !== undefined) {
    const zone = ref.arg;
    const dns = f.dns;
    env.prefetch.push((c) => dns(c, zone));
  }
  if (f.needs === 'headers') env.uses.headers = true;
  if (f.needs === 'scan') env.uses.scan = true;
  if (f.needs === 'size') env.uses.size = true;
  if (f.needs === 'dns' && ref.arg !== undefined) env.uses.dnsLists.add(ref.arg);
  return f;
}

/** Reads a string-like field as a list of values (one for single fields, none when unset). */
function stringsOf(f: FieldDef, arg: string): ((c: EvalContext) => readonly string[]) | undefined {
  if (f.strs) {
    const g = f.strs;
    return (c) => g(c, arg);
  }
  if (f.str) {
    const g = f.str;
    return (c) => {
      const v = g(c, arg);
      return v === undefined ? NONE : [v];
    };
  }
  if (f.dns) {
    const g = f.dns;
    return (c) => g(c, arg).codes;
  }
  return undefined;
}
const NONE: readonly string[] = Object.freeze([]);

/** A single-valued string field without argument, memoised per evaluation. */
function singleOf(f: FieldDef): ((c: EvalContext) => string | undefined) | undefined {
  if (f.strs || !f.str || f.arg !== undefined) return undefined;
  const g = f.str;
  const slot = slotOf(f);
  const compute = (c: EvalContext): string | undefined => g(c, '');
  return (c) => c.memo(slot, compute);
}

/** Its lower-case form, memoised too (list membership is case-insensitive). */
function lowerOf(f: FieldDef): ((c: EvalContext) => string | undefined) | undefined {
  const single = singleOf(f);
  if (!single) return undefined;
  const slot = slotOf(f) + 1;
  const compute = (c: EvalContext): string | undefined => single(c)?.toLowerCase();
  return (c) => c.memo(slot, compute);
}

function actualText(f: FieldDef, ref: FieldRef, c: EvalContext): string {
  const name = fieldText(ref);
  if (f.dns) {
    const o = f.dns(c, ref.arg ?? '');
    return o.error ? `${name} failed (${o.error})` : o.listed ? `${name} listed ${o.codes.join(',')}${o.reason ? ` (${show(o.reason)})` : ''}` : `${name} not listed`;
  }
  if (f.strs) {
    const v = f.strs(c, ref.arg ?? '');
    return v.length === 0 ? `${name} has no value` : `${name} is ${v.slice(0, 5).map(show).join(', ')}${v.length > 5 ? ', …' : ''}`;
  }
  if (f.num) {
    const n = f.num(c);
    return `${name} is ${n === undefined ? 'unset' : n}`;
  }
  if (f.str) return `${name} is ${show(f.str(c, ref.arg ?? ''))}`;
  return name;
}

function compileCmp(node: Extract<ExprNode, { kind: 'cmp' }>, stage: RuleStage, env: ConditionEnv): Cond | undefined {
  const f = resolveField(node.field, stage, env);
  if (!f) {
    if (node.value.kind === 'regex') checkRegex(node.value, env.sink); // still report a bad regex
    return undefined;
  }
  const { sink } = env;
  const ref = node.field;
  const arg = ref.arg ?? '';
  const src = `${fieldText(ref)} ${node.op} ${valueText(node.value)}`;
  const wrap = (test: (c: EvalContext) => boolean): Cond => ({
    test,
    explain: (c) => `${src}: ${test(c) ? 'true' : 'false'}, ${actualText(f, ref, c)}`,
  });
  const op: CmpOp = node.op;
  const typeWord = `${TYPE_WORDS[f.type] ?? f.type} field`;

  if (op === '~' || op === '!~') {
    if (f.type === 'address') {
      sink.error('rule/type-mismatch', `a regex cannot match the address field \`${ref.name}\``, node.opSpan, `use \`${ref.name} in LIST\` with CIDR prefixes or \`${ref.name} == 192.0.2.1\`; \`client.name\` is the client's host name`);
      checkRegex(node.value, sink);
      return undefined;
    }
    if (f.type !== 'string' && f.type !== 'enum' && f.type !== 'dnslist') {
      sink.error('rule/type-mismatch', `a regex cannot match \`${ref.name}\`, ${typeWord}`, node.opSpan, f.type === 'number' || f.type === 'size' || f.type === 'duration' ? 'compare numbers with <, <=, >, >=, ==' : undefined);
      return undefined;
    }
    if (node.value.kind !== 'regex') {
      sink.error('rule/type-mismatch', `expected a /regex/ after ${op}`, node.value.span, `write ${op} /${node.value.kind === 'string' || node.value.kind === 'word' ? node.value.text : '...'}/ (or use == for an exact match)`);
      return undefined;
    }
    const re = checkRegex(node.value, sink);
    if (!re) return undefined;
    const values = stringsOf(f, arg);
    if (!values) return undefined;
    const key = `${stage}\u0000${ref.name}\u0000${arg}`;
    let group = env.groups.get(key);
    if (!group) env.groups.set(key, (group = { id: env.groups.size, patterns: [], cache: new Map() }));
    group.patterns.push(inlineFlags(node.value.pattern, node.value.flags));
    const g = group;
    const neg = op === '!~';
    const single = singleOf(f);
    const match = single
      ? (c: EvalContext): boolean => {
          const v = single(c);
          if (v === undefined) return false;
          if (g.combined !== undefined) {
            const gs = (c.groups ??= []);
            let pre = gs[g.id];
            if (pre === undefined) gs[g.id] = pre = groupTest(g, v);
            if (!pre) return false;
            if (g.patterns.length === 1) return true;
          }
          return re.test(v);
        }
      : (c: EvalContext): boolean => {
          const vs = values(c);
          if (g.combined !== undefined) {
            const gs = (c.groups ??= []);
            let pre = gs[g.id];
            if (pre === undefined) {
              pre = false;
              for (let i = 0; i < vs.length; i++) if (groupTest(g, vs[i] as string)) pre = true;
              gs[g.id] = pre;
            }
            if (!pre) return false;
          }
          for (let i = 0; i < vs.length; i++) if (re.test(vs[i] as string)) return true;
          return false;
        };
    return wrap(neg ? (c) => !match(c) : match);
  }

  if (op === 'in' || op === 'not in') {
    let list: CompiledList | undefined;
    if (node.value.kind === 'listref') {
      list = env.lists.get(node.value.name);
      if (!list) {
        sink.error('rule/unknown-list', `unknown list \`${node.value.name}\``, node.value.span, didYouMean(node.value.name, env.lists.keys()) ?? 'declare it with: list NAME = a, b, c');
        return undefined;
      }
    } else if (node.value.kind === 'inline') {
      list = buildList(valueText(node.value), node.value.span, node.value.items);
    } else {
      sink.error('rule/syntax', `expected a list name or (a, b, ...) after ${op}`, node.value.span);
      return undefined;
    }
    const neg = op === 'not in';
    const l = list;
    if (f.type === 'address') {
      if (!l.isAddressList) {
        const bad = l.badPrefix ?? l.firstNonAddress;
        sink.error(
          l.badPrefix ? 'rule/bad-prefix' : 'rule/type-mismatch',
          l.badPrefix ? `list \`${l.name}\`: ${l.badPrefix.error}` : `list \`${l.name}\` has entries that are not addresses (${JSON.stringify(bad?.text ?? '')}), so it cannot match the address field \`${ref.name}\``,
          node.value.span,
          l.badPrefix ? undefined : `address lists hold addresses and CIDR prefixes only (192.0.2.0/24, 2001:db8::/32)${bad ? `; the entry is at ${bad.span.file}:${bad.span.line}:${bad.span.column}` : ''}`,
        );
        return undefined;
      }
      const ipOf = f.ip as (c: EvalContext) => ParsedIp | undefined;
      const t = (c: EvalContext): boolean => inAddressList(l, ipOf(c));
      return wrap(neg ? (c) => !t(c) : t);
    }
    if (f.type === 'string' || f.type === 'enum' || f.type === 'dnslist') {
      if (l.isAddressList && l.size > 0 && f.type !== 'dnslist') {
        sink.error('rule/type-mismatch', `list \`${l.name}\` holds addresses and CIDR prefixes, but \`${ref.name}\` is ${typeWord}`, node.value.span, 'an address list matches address fields (client, destination); for a text list, quote the entries');
        return undefined;
      }
      if (f.type === 'enum' && f.enumValues) {
        for (const e of l.entries) {
          if (!f.enumValues.includes(e.toLowerCase())) {
            sink.error('rule/bad-value', `${JSON.stringify(e)} is not a value of \`${ref.name}\``, node.value.span, `values: ${f.enumValues.join(', ')}`);
            return undefined;
          }
        }
      }
      const values = stringsOf(f, arg) as (c: EvalContext) => readonly string[];
      const lower = lowerOf(f);
      const t = lower
        ? (c: EvalContext): boolean => inLowerStringList(l, lower(c))
        : (c: EvalContext): boolean => {
            const vs = values(c);
            for (let i = 0; i < vs.length; i++) if (inStringList(l, vs[i])) return true;
            return false;
          };
      return wrap(neg ? (c) => !t(c) : t);
    }
    sink.error('rule/type-mismatch', `\`in\` needs an address or text field; \`${ref.name}\` is ${typeWord}`, node.opSpan, f.type === 'number' || f.type === 'size' ? 'compare numbers with <, <=, >, >=, ==' : undefined);
    return undefined;
  }

  // ==, !=, <, <=, >, >=
  const ordering = op !== '==' && op !== '!=';
  const v = node.value;
  if (v.kind === 'regex') {
    sink.error('rule/type-mismatch', `a regex needs ~, not ${op}`, node.opSpan, `write ${fieldText(ref)} ~ /${v.pattern}/${v.flags}`);
    return undefined;
  }
  if (v.kind !== 'word' && v.kind !== 'string') return undefined;
  const text = v.text;
  if (f.type === 'number' || f.type === 'size' || f.type === 'duration') {
    const other = v.kind === 'word' ? FIELDS.get(text) : undefined;
    if (other && (other.type === 'number' || other.type === 'size' || other.type === 'duration') && other.num) {
      // Field against field: `spam.score >= spam.threshold`.
      const o = resolveField({ name: text, span: v.span }, stage, env);
      if (!o) return undefined;
      if (o.type !== f.type && o.type !== 'number' && f.type !== 'number') {
        sink.error('rule/unit-mismatch', `\`${ref.name}\` is ${typeWord}, but \`${text}\` is ${TYPE_WORDS[o.type]} field`, v.span);
        return undefined;
      }
      const a = f.num as (c: EvalContext) => number | undefined;
      const b = o.num as (c: EvalContext) => number | undefined;
      const cmp2: (x: number, y: number) => boolean =
        op === '==' ? (x, y) => x === y : op === '!=' ? (x, y) => x !== y : op === '<' ? (x, y) => x < y : op === '<=' ? (x, y) => x <= y : op === '>' ? (x, y) => x > y : (x, y) => x >= y;
      return {
        test: (c) => {
          const x = a(c);
          const y = b(c);
          return x !== undefined && y !== undefined && cmp2(x, y);
        },
        explain: (c) => `${src}: ${String(a(c) ?? 'unset')} ${op} ${String(b(c) ?? 'unset')}`,
      };
    }
    const p = parseNumberWithUnit(text);
    if (p === undefined || v.kind === 'string') {
      sink.error('rule/type-mismatch', `\`${ref.name}\` is ${typeWord}; ${JSON.stringify(text)} is not a number`, v.span, f.type === 'size' ? 'e.g. 10MB, 512KB, 1000' : f.type === 'duration' ? 'e.g. 30s, 10m, 1h' : 'e.g. 5, 7.5');
      return undefined;
    }
    if (!isParsedNumber(p)) {
      sink.error('rule/bad-unit', p.error, v.span, p.hint);
      return undefined;
    }
    if (p.unit !== 'none' && p.unit !== f.type) {
      sink.error('rule/unit-mismatch', `\`${ref.name}\` is ${typeWord}, but ${text} is ${TYPE_WORDS[p.unit]}`, v.span, f.type === 'size' ? 'sizes: B, KB, MB, GB' : f.type === 'duration' ? 'durations: s, m, h, d, w' : 'write a plain number');
      return undefined;
    }
    const n = p.value;
    const get = f.num as (c: EvalContext) => number | undefined;
    const cmp: (a: number) => boolean =
      op === '==' ? (a) => a === n : op === '!=' ? (a) => a !== n : op === '<' ? (a) => a < n : op === '<=' ? (a) => a <= n : op === '>' ? (a) => a > n : (a) => a >= n;
    return wrap((c) => {
      const a = get(c);
      return a === undefined ? op === '!=' : cmp(a);
    });
  }
  if (ordering) {
    sink.error('rule/type-mismatch', `${op} compares numbers; \`${ref.name}\` is ${typeWord}`, node.opSpan, f.type === 'string' ? 'use == or ~ /regex/' : undefined);
    return undefined;
  }
  const neg = op === '!=';
  if (f.type === 'address') {
    const want = parseIp(text);
    if (!want) {
      sink.error('rule/bad-address', `${JSON.stringify(text)} is not an IP address`, v.span, text.includes('/') ? `to match a prefix write ${fieldText(ref)} in (${text})` : 'e.g. 192.0.2.1 or 2001:db8::1');
      return undefined;
    }
    const ipOf = f.ip as (c: EvalContext) => ParsedIp | undefined;
    const t = (c: EvalContext): boolean => {
      const ip = ipOf(c);
      return ip !== undefined && ip.v6 === want.v6 && ip.words.every((w, i) => w === want.words[i]);
    };
    return wrap(neg ? (c) => !t(c) : t);
  }
  if (f.type === 'bool') {
    if (text !== 'true' && text !== 'false') {
      sink.error('rule/type-mismatch', `\`${ref.name}\` is yes/no; compare it with true or false`, v.span, `or just write \`${ref.name}\` / \`not ${ref.name}\``);
      return undefined;
    }
    const want = text === 'true';
    const b = f.bool as (c: EvalContext, a: string) => boolean;
    return wrap((c) => (b(c, arg) === want) !== neg);
  }
  if (f.type === 'enum' && f.enumValues && !f.enumValues.includes(text.toLowerCase())) {
    sink.error('rule/bad-value', `${JSON.stringify(text)} is not a value of \`${ref.name}\``, v.span, didYouMean(text, f.enumValues) ?? `values: ${f.enumValues.join(', ')}`);
    return undefined;
  }
  if (f.type === 'dnslist' && !parseIp(text)) {
    sink.error('rule/bad-address', `DNS list answers are addresses; ${JSON.stringify(text)} is not one`, v.span, 'e.g. dnsbl(zen) == 127.0.0.2');
    return undefined;
  }
  const values = stringsOf(f, arg);
  if ((f.type !== 'string' && f.type !== 'enum' && f.type !== 'dnslist') || !values) {
    sink.error('rule/type-mismatch', `\`${ref.name}\` is ${typeWord} and cannot be compared with ${op}`, node.opSpan, f.type === 'scanner' ? 'use scanner(NAME) failed / skipped' : undefined);
    return undefined;
  }
  const want = text.toLowerCase();
  const lowerEq = lowerOf(f);
  if (lowerEq) {
    const te = (c: EvalContext): boolean => lowerEq(c) === want;
    return wrap(neg ? (c) => !te(c) : te);
  }
  const t = (c: EvalContext): boolean => {
    const vs = values(c);
    for (let i = 0; i < vs.length; i++) {
      const s = vs[i] as string;
      if (s.length === want.length && s.toLowerCase() === want) return true;
    }
    return false;
  };
  return wrap(neg ? (c) => !t(c) : t);
}

function compilePred(node: Extract<ExprNode, { kind: 'pred' }>, stage: RuleStage, env: ConditionEnv): Cond | undefined {
  const f = resolveField(node.field, stage, env);
  if (!f) return undefined;
  const { sink } = env;
  const ref = node.field;
  const arg = ref.arg ?? '';
  const name = fieldText(ref);
  const typeWord = `${TYPE_WORDS[f.type] ?? f.type} field`;
  const pred = node.pred;
  if (pred === 'locked') {
    if (!f.lockable) {
      sink.error('rule/type-mismatch', `\`${ref.name}\` cannot be locked`, node.span, '`client is locked` or `auth is locked`');
      return undefined;
    }
    env.uses.locks = true;
    const b = f.bool as (c: EvalContext, a: string) => boolean;
    return {
      test: (c) => b(c, ''),
      explain: (c) => (b(c, '') ? `${name} is locked (${show(c.lastLock?.reason)})` : `${name} is not locked`),
    };
  }
  if (pred === undefined || pred === 'listed') {
    if (f.dns) {
      const d = f.dns;
      return { test: (c) => d(c, arg).listed, explain: (c) => actualText(f, ref, c) };
    }
    if (pred === 'listed') {
      sink.error('rule/bad-predicate', `\`listed\` applies to DNS lists; \`${ref.name}\` is ${typeWord}`, node.span);
      return undefined;
    }
    if (f.type === 'bool' && f.bool) {
      const b = f.bool;
      return { test: (c) => b(c, arg), explain: (c) => `${name} is ${b(c, arg) ? 'true' : 'false'}` };
    }
    if (f.arg === 'header' && f.strs) {
      const g = f.strs;
      return { test: (c) => g(c, arg).length > 0, explain: (c) => `${name} ${g(c, arg).length > 0 ? 'exists' : 'does not exist'}` };
    }
    const hint =
      f.type === 'address' ? `compare it: \`${ref.name} in LIST\`, \`${ref.name} == 192.0.2.1\`${f.lockable ? ` or \`${ref.name} is locked\`` : ''}` :
      f.type === 'string' ? `compare it: \`${ref.name} ~ /regex/\`, \`${ref.name} == "text"\`, \`${ref.name} in LIST\` or \`${ref.name} exists\`` :
      f.type === 'scanner' ? '`scanner(NAME) failed` or `scanner(NAME) skipped`' :
      f.type === 'lockstore' ? '`locks failed`' :
      `compare it, e.g. \`${ref.name} > 10\``;
    sink.error('rule/not-boolean', `\`${ref.name}\` is ${typeWord}, not a condition`, node.span, hint);
    return undefined;
  }
  if (pred === 'failed') {
    if (f.dns) {
      const d = f.dns;
      return { test: (c) => d(c, arg).error !== undefined, explain: (c) => actualText(f, ref, c) };
    }
    if (f.type === 'scanner') {
      const t = (c: EvalContext): boolean => (ref.arg === undefined ? Object.keys(c.tx.message.scan.failed).length > 0 : c.tx.message.scan.failed[arg] !== undefined);
      return { test: t, explain: (c) => `${name} ${t(c) ? 'failed' : 'did not fail'}${t(c) ? ` (${Object.entries(c.tx.message.scan.failed).map(([k, v]) => `${k}: ${show(v)}`).join(', ')})` : ''}` };
    }
    if (f.type === 'lockstore') {
      env.uses.locks = true;
      const b = f.bool as (c: EvalContext, a: string) => boolean;
      return { test: (c) => b(c, ''), explain: (c) => (b(c, '') ? 'the lock store failed' : 'the lock store answered') };
    }
    sink.error('rule/bad-predicate', `\`failed\` applies to dnsbl(...), rhsbl(...), scanner(...) and locks; \`${ref.name}\` is ${typeWord}`, node.span, ref.name === 'spf' ? 'write spf == temperror' : undefined);
    return undefined;
  }
  if (pred === 'skipped') {
    if (f.type !== 'scanner') {
      sink.error('rule/bad-predicate', `\`skipped\` applies to scanner(...); \`${ref.name}\` is ${typeWord}`, node.span);
      return undefined;
    }
    const t = (c: EvalContext): boolean => (ref.arg === undefined ? c.tx.message.scan.skipped.length > 0 : c.tx.message.scan.skipped.includes(arg));
    return { test: t, explain: (c) => `${name} ${t(c) ? 'was skipped' : 'was not skipped'}` };
  }
  // exists
  const values = f.type === 'string' ? stringsOf(f, arg) : undefined;
  if (!values) {
    sink.error('rule/bad-predicate', `\`exists\` applies to text fields and header(...); \`${ref.name}\` is ${typeWord}`, node.span);
    return undefined;
  }
  const t = (c: EvalContext): boolean => {
    const vs = values(c);
    return vs.length > 0 && (f.multi === true || vs[0] !== '');
  };
  return { test: t, explain: (c) => `${name} ${t(c) ? 'exists' : 'does not exist'}` };
}

function inlineFlags(pattern: string, flags: string): string {
  return flags ? `(?${flags}:${pattern})` : `(?:${pattern})`;
}

/** Compiles a regex literal with RE2 (linear time); reports RE2's reason when it refuses the pattern. */
export function checkRegex(v: ValueNode, sink: DiagnosticSink): RE2 | undefined {
  if (v.kind !== 'regex') return undefined;
  try {
    return new RE2(v.pattern, v.flags);
  } catch (e) {
    const why = (e as Error).message;
    const hint = /perl operator|backreference|\\[1-9]/i.test(why + v.pattern)
      ? 'RE2 runs in linear time and has no lookaround or backreferences; rewrite the pattern without them'
      : 'see https://github.com/google/re2/wiki/Syntax';
    sink.error('rule/bad-regex', `invalid regex: ${why}`, v.span, hint);
    return undefined;
  }
}

/** Builds the combined pre-check regex of each group with two or more members. */
export function finishRegexGroups(groups: Map<string, RegexGroup>): void {
  for (const g of groups.values()) {
    try {
      g.combined = new RE2(g.patterns.length === 1 ? (g.patterns[0] as string) : g.patterns.join('|'));
    } catch {
      // Combined pattern too large for RE2's memory budget: the members still work one by one.
    }
  }
}

