/**
 * Templates with {variables}: reply texts, header values, lock reasons and quarantine reasons.
 * Parsed and checked at compile time (unknown variable, variable not known at the rule's stage);
 * rendered with every interpolated value made safe: CR, LF, NUL and other controls become spaces, so a
 * hostile HELO cannot inject reply lines or headers, and each value is capped in length.
 */
import type { RuleStage } from '../core/stage.js';
import type { EvalContext } from './rule-context.js';
import { availableAt, dnsFact, FIELDS, fieldAsText, STAGE_INDEX, VARIABLES } from './rule-fields.js';
import { didYouMean, type DiagnosticSink, type Span } from './rule-source.js';

export type TemplatePart = string | ((ctx: EvalContext, rule: string) => string);

export interface Template {
  readonly source: string;
  readonly parts: readonly TemplatePart[];
  readonly constant: boolean;
}

/** Longest text one variable contributes. */
export const MAX_VAR_TEXT = 200;

export function sanitizeValue(s: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return clean.length > MAX_VAR_TEXT ? clean.slice(0, MAX_VAR_TEXT) : clean;
}

export function knownVariables(): string[] {
  return [...[...FIELDS.values()].filter((f) => f.arg === undefined && f.type !== 'lockstore').map((f) => f.name), ...VARIABLES.keys()];
}

/** What a template reads from providers (so PolicyNeeds stays right when only a reply text reads {spf}). */
export interface TemplateUses {
  spf: boolean;
  scan: boolean;
  headers: boolean;
  size: boolean;
  dnsLists: Set<string>;
  /** Configured zones, when known (unknown zones in {dnsbl(x).reason} are errors then). */
  readonly zones?: ReadonlySet<string>;
}

const DNS_VAR = /^(dnsbl|dnswl|rhsbl)\(([A-Za-z0-9_.-]{1,100})\)\.(reason|code)$/;

export function compileTemplate(text: string, span: Span, stage: RuleStage, sink: DiagnosticSink, uses?: TemplateUses): Template {
  const parts: TemplatePart[] = [];
  let lit = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === '{' && text[i + 1] === '{') {
      lit += '{';
      i += 2;
      continue;
    }
    if (c === '}' && text[i + 1] === '}') {
      lit += '}';
      i += 2;
      continue;
    }
    if (c === '}') {
      sink.error('rule/bad-template', 'unmatched "}" in text', span, 'write }} for a literal brace');
      i++;
      continue;
    }
    if (c === '{') {
      const end = text.indexOf('}', i);
      if (end < 0) {
        sink.error('rule/bad-template', 'unclosed "{" in text', span, 'variables are written {client.ip}; write {{ for a literal brace');
        break;
      }
      const name = text.slice(i + 1, end).trim();
      const getter = variableGetter(name, stage, span, sink, uses);
      if (getter) {
        if (lit) parts.push(lit);
        lit = '';
        parts.push(getter);
      }
      i = end + 1;
      continue;
    }
    lit += c;
    i++;
  }
  if (lit) parts.push(lit);
  return { source: text, parts, constant: parts.every((p) => typeof p === 'string') };
}

function variableGetter(name: string, stage: RuleStage, span: Span, sink: DiagnosticSink, uses?: TemplateUses): TemplatePart | undefined {
  const dm = DNS_VAR.exec(name);
  if (dm) {
    const [, kind, zone, what] = dm as unknown as [string, 'dnsbl' | 'dnswl' | 'rhsbl', string, 'reason' | 'code'];
    if (kind === 'rhsbl' && STAGE_INDEX[stage] < STAGE_INDEX.mail) {
      sink.error('rule/field-stage', `{${name}} is not known at the ${stage} stage`, span, 'it is known from the mail stage on');
      return undefined;
    }
    if (uses?.zones && !uses.zones.has(zone)) {
      sink.error('rule/unknown-zone', `unknown DNS list \`${zone}\` in {${name}}`, span, didYouMean(zone, uses.zones) ?? 'no such DNS list is configured');
      return undefined;
    }
    uses?.dnsLists.add(zone);
    const lookup = kind === 'rhsbl' ? 'rhsbl' : 'dnsbl';
    return (ctx) => {
      const o = dnsFact(ctx, lookup, zone);
      return sanitizeValue(what === 'code' ? o.codes.join(',') : (o.reason ?? ''));
    };
  }
  const v = VARIABLES.get(name);
  if (v) {
    if (!availableAt(v, stage)) {
      sink.error('rule/field-stage', `{${name}} is not known at the ${stage} stage`, span, `it is known from the ${v.from} stage on`);
      return undefined;
    }
    if (uses && name.startsWith('spf.')) uses.spf = true;
    return (ctx, rule) => sanitizeValue(v.get(ctx, rule));
  }
  const f = FIELDS.get(name);
  if (f && f.arg === undefined && f.type !== 'lockstore') {
    if (!availableAt(f, stage)) {
      sink.error('rule/field-stage', `{${name}} is not known at the ${stage} stage`, span, f.only ? `it is known only at the ${f.only.join(', ')} stage` : `it is known from the ${f.from} stage on`);
      return undefined;
    }
    if (uses && f.needs === 'spf') uses.spf = true;
    if (uses && f.needs === 'scan') uses.scan = true;
    if (uses && f.needs === 'headers') uses.headers = true;
    if (uses && f.needs === 'size') uses.size = true;
    return (ctx) => sanitizeValue(fieldAsText(f, ctx));
  }
  sink.error('rule/unknown-variable', `unknown variable {${name}}`, span, didYouMean(name, knownVariables()) ?? 'see docs/rules.md for the variables');
  return undefined;
}

export function renderTemplate(t: Template, ctx: EvalContext, rule: string): string {
  if (t.constant) return t.parts.length === 1 ? (t.parts[0] as string) : (t.parts as string[]).join('');
  let out = '';
  for (const p of t.parts) out += typeof p === 'string' ? p : p(ctx, rule);
  return out;
}
