/**
 * The pipeline: parse every file, check and compile every declaration, and either return a complete
 * ruleset or throw one DiagnosticsError listing every problem (a broken rule file never half-loads).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DiagnosticsError } from '../core/errors.js';
import type { PolicyNeeds } from '../core/policy-port.js';
import { replyProblem } from '../core/smtp-reply.js';
import { isRuleStage, RULE_STAGES, type RuleStage } from '../core/stage.js';
import type { SourceLocation, VerdictAction } from '../core/verdict.js';
import type { ActionNode, DeclNode, ListNode, RuleNode, TestNode } from './rule-ast.js';
import { compileCondition, finishRegexGroups, type Cond, type ConditionEnv, type RegexGroup } from './rule-conditions.js';
import { buildList, loadListFile, type CompiledList } from './rule-lists.js';
import { parseRules } from './rule-parser.js';
import { DiagnosticSink, didYouMean, SourceFile, spanLocation, type Span } from './rule-source.js';
import { compileTemplate, type Template, type TemplateUses } from './rule-template.js';
import { compileTest, type CompiledTest } from './rule-test-compile.js';
import type { EvalContext } from './rule-context.js';
import { STAGE_INDEX } from './rule-fields.js';
import { parseDuration } from './rule-values.js';

export interface RuleSource {
  readonly file: string;
  readonly text: string;
}

export interface CompileOptions {
  /** DNS list zone names configured; when given, an unknown zone is a compile error. */
  readonly dnsLists?: ReadonlySet<string>;
  /** Action hook names configured; when given, an unknown hook is a compile error. */
  readonly hooks?: ReadonlySet<string>;
  /** Directory relative list file paths are resolved from (default: the rule file's directory). */
  readonly baseDir?: string;
}

export interface ReplyTemplate {
  readonly code: number;
  readonly enhanced?: string;
  readonly text: Template;
}

export interface CompiledRule {
  readonly name: string;
  readonly stage: RuleStage;
  readonly location: SourceLocation;
  /** Position in the ruleset (file order, then order in the file). */
  readonly index: number;
  readonly cond?: Cond;
  /** Reads each provider fact the condition may need (throwing NeedFact), so they are fetched in parallel. */
  readonly prefetch: readonly ((ctx: EvalContext) => unknown)[];
  /** The terminal action, or 'continue' when the rule only adds headers, locks, tags or runs hooks. */
  readonly action: VerdictAction;
  readonly reply?: ReplyTemplate;
  readonly quarantineReason?: Template;
  /** Headers to add (`first`: insert as the first header line, SMFIR_INSHEADER index 0). */
  readonly headers: readonly { readonly name: string; readonly value: Template; readonly first?: boolean }[];
  /** Header names whose every occurrence is removed (SMFIR_CHGHEADER with an empty value). */
  readonly removeHeaders: readonly string[];
  readonly lock?: { readonly subject: 'client' | 'auth'; readonly durationMs: number; readonly reason: Template };
  readonly hooks: readonly string[];
  readonly tags: readonly string[];
}

export interface CompiledRuleset {
  readonly rules: readonly CompiledRule[];
  readonly byStage: ReadonlyMap<RuleStage, readonly CompiledRule[]>;
  readonly lists: ReadonlyMap<string, CompiledList>;
  readonly tests: readonly CompiledTest[];
  readonly needs: PolicyNeeds;
  readonly files: readonly string[];
}

export const DEFAULT_REJECT = { code: 550, enhanced: '5.7.1', text: 'Rejected by policy' } as const;
export const DEFAULT_TEMPFAIL = { code: 451, enhanced: '4.7.1', text: 'Temporarily refused by policy, try again later' } as const;
const MESSAGE_STAGES: readonly RuleStage[] = ['mail', 'rcpt', 'data', 'header', 'eoh', 'eom'];
const HEADER_STAGES: readonly RuleStage[] = ['eoh', 'eom'];
const TERMINAL = new Set(['accept', 'reject', 'tempfail', 'discard', 'quarantine']);

export function compileRules(sources: readonly RuleSource[], opts: CompileOptions = {}): CompiledRuleset {
  const sink = new DiagnosticSink();
  const perFile: { src: SourceFile; decls: DeclNode[] }[] = [];
  for (const s of sources) {
    const src = new SourceFile(s.file, s.text);
    sink.addFile(src);
    perFile.push({ src, decls: parseRules(src, sink) });
  }

  // Lists first: any file may use a list declared in any other.
  const lists = new Map<string, CompiledList>();
  const listDecls = new Map<string, ListNode>();
  for (const { src, decls } of perFile) {
    for (const d of decls) {
      if (d.kind !== 'list') continue;
      const prev = listDecls.get(d.name);
      if (prev) {
        sink.error('rule/duplicate-list', `list \`${d.name}\` is already declared at ${prev.nameSpan.file}:${prev.nameSpan.line}:${prev.nameSpan.column}`, d.nameSpan, 'list names must be unique across all rule files');
        continue;
      }
      listDecls.set(d.name, d);
      const items = d.file ? loadListFile(d, opts.baseDir ?? dirname(src.file), sink) : d.items;
      if (!items) continue;
      const list = buildList(d.name, d.nameSpan, items);
      lists.set(d.name, list);
    }
  }

  const groups = new Map<string, RegexGroup>();
  // Shared by conditions and templates (TemplateUses): what the rules read, and the configured zones.
  const uses: ConditionEnv['uses'] & TemplateUses = { spf: false, headers: false, scan: false, size: false, dnsLists: new Set<string>(), locks: false, ...(opts.dnsLists ? { zones: opts.dnsLists } : {}) };
  const env: ConditionEnv = { sink, lists, groups, uses, prefetch: [], ...(opts.dnsLists ? { dnsLists: opts.dnsLists } : {}) };
  const rules: CompiledRule[] = [];
  const ruleDecls = new Map<string, RuleNode>();
  const tests: CompiledTest[] = [];
  const testNodes: TestNode[] = [];
  for (const { decls } of perFile) {
    for (const d of decls) {
      if (d.kind === 'rule') {
        const prev = ruleDecls.get(d.name);
        if (prev) sink.error('rule/duplicate-rule', `rule \`${d.name}\` is already declared at ${prev.nameSpan.file}:${prev.nameSpan.line}:${prev.nameSpan.column}`, d.nameSpan, 'rule names must be unique across all rule files');
        else ruleDecls.set(d.name, d);
        const r = compileRule(d, rules.length, env, opts);
        if (r) rules.push(r);
      } else if (d.kind === 'test') testNodes.push(d);
    }
  }
  const testNames = new Map<string, Span>();
  for (const t of testNodes) {
    const prev = testNames.get(t.name);
    if (prev) sink.error('rule/duplicate-test', `test ${JSON.stringify(t.name)} is already declared at ${prev.file}:${prev.line}:${prev.column}`, t.span);
    testNames.set(t.name, t.span);
    const ct = compileTest(t, sink, lists);
    if (ct) tests.push(ct);
  }

  if (sink.count > 0) {
    const order = new Map(sources.map((s, i) => [s.file, i]));
    const rank = (f: string | undefined): number => (f === undefined ? -1 : (order.get(f) ?? sources.length));
    const sorted = sink.items
      .map((d, i) => ({ d, i }))
      .sort((a, b) => Number(a.d.code === 'rule/too-many-errors') - Number(b.d.code === 'rule/too-many-errors') || rank(a.d.location?.file) - rank(b.d.location?.file) || (a.d.location?.line ?? 0) - (b.d.location?.line ?? 0) || (a.d.location?.column ?? 0) - (b.d.location?.column ?? 0) || a.i - b.i)
      .map((x) => x.d);
    throw new DiagnosticsError(sorted);
  }
  finishRegexGroups(groups);

  const byStage = new Map<RuleStage, CompiledRule[]>();
  for (const r of rules) {
    let a = byStage.get(r.stage);
    if (!a) byStage.set(r.stage, (a = []));
    a.push(r);
  }
  const needs: PolicyNeeds = {
    stages: new Set(byStage.keys()),
    headers: uses.headers || byStage.has('header') || byStage.has('eoh'),
    scan: uses.scan,
    spf: uses.spf,
    // Action hooks get the size in their environment (SIZE): an eom rule with a hook reads it too.
    size: uses.size || (byStage.get('eom') ?? []).some((r) => r.hooks.length > 0),
    dnsLists: uses.dnsLists,
    refuses: new Set(rules.filter((r) => r.action === 'reject' || r.action === 'tempfail').map((r) => r.stage)),
  };
  return { rules, byStage, lists, tests, needs, files: sources.map((s) => s.file) };
}

function compileRule(d: RuleNode, index: number, env: ConditionEnv, opts: CompileOptions): CompiledRule | undefined {
  const { sink } = env;
  if (!isRuleStage(d.stage)) {
    sink.error('rule/unknown-stage', `unknown stage \`${d.stage}\``, d.stageSpan, didYouMean(d.stage, RULE_STAGES) ?? `stages: ${RULE_STAGES.join(', ')}`);
    return undefined;
  }
  const stage = d.stage;
  const before = sink.count;
  env.prefetch.length = 0;
  const cond = d.condition ? compileCondition(d.condition, stage, env) : undefined;
  const prefetch = [...env.prefetch];
  let action: VerdictAction = 'continue';
  let terminalSpan: Span | undefined;
  let reply: ReplyTemplate | undefined;
  let quarantineReason: Template | undefined;
  const headers: { name: string; value: Template; first?: boolean }[] = [];
  const removeHeaders: string[] = [];
  let lock: CompiledRule['lock'];
  const hooks: string[] = [];
  const tags: string[] = [];
  for (const a of d.actions) {
    if (TERMINAL.has(a.kind)) {
      if (terminalSpan) {
        sink.error('rule/conflicting-actions', `a rule has one final action; this one already ends with ${action}`, a.span, 'split it into two rules');
        continue;
      }
      terminalSpan = a.span;
      action = a.kind as VerdictAction;
    }
    if ((a.kind === 'discard' || a.kind === 'quarantine' || a.kind === 'add-header') && !MESSAGE_STAGES.includes(stage)) {
      const what = a.kind === 'add-header' ? (a.first ? 'insert header' : 'add header') : a.kind;
      sink.error('rule/action-stage', `${what} acts on a message and cannot be used at the ${stage} stage`, a.span, `use it at ${MESSAGE_STAGES.join(', ')}`);
      continue;
    }
    if (a.kind === 'remove-header' && !HEADER_STAGES.includes(stage)) {
      sink.error('rule/action-stage', `remove header needs the message headers and cannot be used at the ${stage} stage`, a.span, `use it at ${HEADER_STAGES.join(', ')}`);
      continue;
    }
    switch (a.kind) {
      case 'reject':
      case 'tempfail':
        reply = compileReply(a, stage, sink, env);
        break;
      case 'quarantine':
        quarantineReason = compileTemplate(a.text?.value ?? 'quarantined by rule {rule}', a.text?.span ?? a.span, stage, sink, env.uses);
        break;
      case 'remove-header':
        if (!/^[\x21-\x39\x3b-\x7e]{1,100}$/.test(a.name.value)) {
          sink.error('rule/bad-header', `${JSON.stringify(a.name.value.slice(0, 60))} is not a valid header name`, a.name.span, 'header names are printable ASCII without spaces or ":" (RFC 5322 §2.2)');
          break;
        }
        removeHeaders.push(a.name.value);
        env.uses.headers = true;
        break;
      case 'add-header': {
        if (!/^[\x21-\x39\x3b-\x7e]{1,100}$/.test(a.name.value)) {
          sink.error('rule/bad-header', `${JSON.stringify(a.name.value.slice(0, 60))} is not a valid header name`, a.name.span, 'header names are printable ASCII without spaces or ":" (RFC 5322 §2.2)');
          break;
        }
        if (/\n(?![ \t])/.test(a.value.value) || /\r/.test(a.value.value)) {
          sink.error('rule/bad-header', 'a line break in a header value must be followed by a space or tab (folding)', a.value.span, 'write "\\n\\t" to continue the header on the next line');
          break;
        }
        if (a.value.value.length > 900) {
          sink.error('rule/bad-header', 'header value template is longer than 900 characters', a.value.span);
          break;
        }
        headers.push({ name: a.name.value, value: compileTemplate(a.value.value, a.value.span, stage, sink, env.uses), ...(a.first ? { first: true } : {}) });
        break;
      }
      case 'lock': {
        if (lock) {
          sink.error('rule/conflicting-actions', 'a rule can set one lock', a.span);
          break;
        }
        if (a.subject === 'auth' && STAGE_INDEX[stage] < STAGE_INDEX.auth) {
          sink.error('rule/field-stage', `the authenticated user is not known at the ${stage} stage`, a.span, 'lock auth from the auth stage on');
          break;
        }
        const dur = parseDuration(a.duration.value);
        if (typeof dur !== 'number') {
          sink.error('rule/bad-duration', dur.error, a.duration.span, dur.hint);
          break;
        }
        const reason = compileTemplate(a.reason?.value ?? d.name, a.reason?.span ?? a.span, stage, sink, env.uses);
        lock = { subject: a.subject, durationMs: dur, reason };
        break;
      }
      case 'hook':
        if (opts.hooks && !opts.hooks.has(a.name)) {
          sink.error('rule/unknown-hook', `unknown action hook \`${a.name}\``, a.span, didYouMean(a.name, opts.hooks) ?? (opts.hooks.size ? `configured hooks: ${[...opts.hooks].join(', ')}` : 'no hooks are configured (hooks in sluice.yaml)'));
          break;
        }
        hooks.push(a.name);
        break;
      case 'tag':
        if (!/^[\w.:-]{1,64}$/.test(a.name)) {
          sink.error('rule/bad-tag', `tag ${JSON.stringify(a.name.slice(0, 40))} must be a word (letters, digits, . _ : -)`, a.span);
          break;
        }
        tags.push(a.name);
        break;
      case 'accept':
      case 'discard':
        break;
    }
  }
  if (sink.count > before) return undefined;
  return {
    name: d.name,
    stage,
    location: spanLocation(d.nameSpan),
    index,
    ...(cond ? { cond } : {}),
    prefetch,
    action,
    ...(reply ? { reply } : {}),
    ...(quarantineReason ? { quarantineReason } : {}),
    headers,
    removeHeaders,
    ...(lock ? { lock } : {}),
    hooks,
    tags,
  };
}

function compileReply(a: Extract<ActionNode, { kind: 'reject' | 'tempfail' }>, stage: RuleStage, sink: DiagnosticSink, env: ConditionEnv): ReplyTemplate | undefined {
  const def = a.kind === 'reject' ? DEFAULT_REJECT : DEFAULT_TEMPFAIL;
  const code = a.code ? Number(a.code.value) : def.code;
  const enhanced = a.code ? a.enhanced?.value : def.enhanced;
  const textSrc = a.text?.value ?? def.text;
  const problem = replyProblem({ code, ...(enhanced !== undefined ? { enhanced } : {}), lines: textSrc.split('\n') }, a.kind);
  if (problem) {
    const span = /enhanced/.test(problem) && a.enhanced ? a.enhanced.span : /reply line|CR, LF|line of text/.test(problem) && a.text ? a.text.span : (a.code?.span ?? a.span);
    const hint = a.kind === 'reject' ? 'a reject takes a 5xx code, e.g. reject 550 5.7.1 "text"' : 'a tempfail takes a 4xx code, e.g. tempfail 451 4.7.1 "text"';
    sink.error('rule/bad-reply', problem, span, hint);
    return undefined;
  }
  const text = compileTemplate(textSrc, a.text?.span ?? a.span, stage, sink, env.uses);
  return { code, ...(enhanced !== undefined ? { enhanced } : {}), text };
}

/** Reads rule files: files as given, directories as their `*.rules` files in name order. */
export async function compileRuleFiles(paths: readonly string[], opts: CompileOptions = {}): Promise<CompiledRuleset> {
  const sources: RuleSource[] = [];
  const problems: { code: string; message: string }[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      problems.push({ code: 'rule/file', message: `cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    const files = st.isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith('.rules'))
          .sort()
          .map((f) => join(p, f))
      : [p];
    for (const f of files) {
      try {
        const s = statSync(f);
        if (s.size > 16 * 1024 * 1024) {
          problems.push({ code: 'rule/file', message: `${f} is ${s.size} bytes; a rule file may have at most 16 MiB` });
          continue;
        }
        sources.push({ file: f, text: readFileSync(f, 'utf8') });
      } catch (e) {
        problems.push({ code: 'rule/file', message: `cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      }
    }
  }
  if (problems.length > 0) throw new DiagnosticsError(problems);
  return compileRules(sources, opts);
}
