/**
 * Reporters for `sluice policy test`: readable text, JSON and JUnit XML (fast-xml-parser), plus the
 * `--explain` trace. Pure functions from results to text; the CLI decides where the text goes.
 */
import { XMLBuilder } from 'fast-xml-parser';
import type { RuleStage } from '../core/stage.js';
import type { SourceLocation, Verdict } from '../core/verdict.js';
import type { RuleTrace } from './policy-engine.js';
import type { RuleCoverage, TestCaseResult } from './rule-tester.js';

/** The tester's results, as the reporters see them. */
export type ReportedTest = Readonly<TestCaseResult>;
export type ReportedCoverage = RuleCoverage;

export interface ReportedExplain {
  readonly stages: readonly { readonly stage: RuleStage; readonly considered: readonly RuleTrace[]; readonly verdict: Verdict }[];
  readonly final: Verdict;
}

const where = (l: SourceLocation): string => `${l.file}:${l.line}:${l.column}`;

export function describeVerdict(v: Verdict): string {
  let s: string = v.action;
  if (v.reply) s += ` ${v.reply.code}${v.reply.enhanced ? ' ' + v.reply.enhanced : ''} "${v.reply.lines.join('\\n')}"`;
  return s;
}

export function summaryLine(results: readonly ReportedTest[]): string {
  const failed = results.filter((r) => !r.passed).length;
  return `${results.length - failed} passed, ${failed} failed`;
}

export function formatTestText(results: readonly ReportedTest[], coverage?: readonly ReportedCoverage[], verbose = false): string {
  let out = '';
  for (const r of results) {
    if (r.passed) {
      out += `PASS  ${r.name}\n`;
      if (verbose) out += `      ${where(r.location)}: ${r.actual}\n`;
      continue;
    }
    out += `FAIL  ${r.name}\n      at ${where(r.location)}\n      expected: ${r.expected}\n      actual:   ${r.actual}\n`;
    if (r.failure) out += `      ${r.failure}\n`;
    for (const h of r.hits) out += `      fired: ${h.rule} (${where(h.location)}) at ${h.stage}: ${h.because}\n`;
  }
  if (coverage) out += formatCoverageText(coverage);
  out += `\n${summaryLine(results)}\n`;
  return out;
}

export function formatCoverageText(coverage: readonly ReportedCoverage[]): string {
  const missed = coverage.filter((c) => !c.reached);
  const pct = coverage.length === 0 ? 100 : Math.round(((coverage.length - missed.length) * 1000) / coverage.length) / 10;
  let out = `\ncoverage: ${coverage.length - missed.length} of ${coverage.length} rules reached by a test (${pct}%)\n`;
  for (const c of missed) out += `  not reached: ${c.rule} (${where(c.location)})\n`;
  return out;
}

export function formatTestJson(results: readonly ReportedTest[], coverage?: readonly ReportedCoverage[]): string {
  const failed = results.filter((r) => !r.passed).length;
  const doc = {
    summary: { total: results.length, passed: results.length - failed, failed },
    tests: results.map((r) => ({
      name: r.name,
      location: r.location,
      passed: r.passed,
      stage: r.stage,
      expected: r.expected,
      actual: r.actual,
      ...(r.failure ? { failure: r.failure } : {}),
      durationMs: Math.round(r.durationMs * 1000) / 1000,
      hits: r.hits.map((h) => ({ rule: h.rule, stage: h.stage, action: h.action, location: h.location, because: h.because })),
    })),
    ...(coverage ? { coverage: coverage.map((c) => ({ rule: c.rule, location: c.location, reached: c.reached })) } : {}),
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

/** JUnit XML as CI systems read it: one testsuite per rule file. */
export function formatTestJunit(results: readonly ReportedTest[]): string {
  const byFile = new Map<string, ReportedTest[]>();
  for (const r of results) {
    const list = byFile.get(r.location.file) ?? [];
    list.push(r);
    byFile.set(r.location.file, list);
  }
  const seconds = (ms: number): string => (ms / 1000).toFixed(3);
  const suites = [...byFile.entries()].map(([file, tests]) => ({
    '@_name': file,
    '@_tests': String(tests.length),
    '@_failures': String(tests.filter((t) => !t.passed).length),
    '@_errors': '0',
    '@_skipped': '0',
    '@_time': seconds(tests.reduce((s, t) => s + t.durationMs, 0)),
    testcase: tests.map((t) => ({
      '@_classname': file,
      '@_name': t.name,
      '@_file': file,
      '@_line': String(t.location.line),
      '@_time': seconds(t.durationMs),
      ...(t.passed
        ? {}
        : { failure: { '@_message': `expected ${t.expected}, got ${t.actual}`, '@_type': 'PolicyTestFailure', '#text': `${where(t.location)}\nexpected: ${t.expected}\nactual:   ${t.actual}${t.failure ? '\n' + t.failure : ''}` } }),
    })),
  }));
  const failures = results.filter((r) => !r.passed).length;
  const builder = new XMLBuilder({ ignoreAttributes: false, format: true, indentBy: '  ', suppressEmptyNode: true });
  const xml = builder.build({
    testsuites: {
      '@_name': 'sluice policy test',
      '@_tests': String(results.length),
      '@_failures': String(failures),
      '@_errors': '0',
      testsuite: suites,
    },
  }) as string;
  return `<?xml version="1.0" encoding="UTF-8"?>\n${xml}`;
}

/** Every rule considered at each stage, matched or not, then the verdict. */
export function formatExplainText(ex: ReportedExplain): string {
  let out = '';
  for (const s of ex.stages) {
    out += `stage ${s.stage}\n`;
    if (s.considered.length === 0) out += '  (no rules at this stage)\n';
    for (const t of s.considered) {
      out += `  ${t.matched ? 'MATCH' : 'no   '} ${t.rule} (${where(t.location)}) -> ${t.action}: ${t.because}\n`;
    }
    const v = s.verdict;
    out += `  => ${describeVerdict(v)}\n`;
    for (const m of v.mutations) out += `     ${m.kind} header ${m.name}: ${m.value}\n`;
    for (const e of v.effects) {
      if (e.kind === 'lock') out += `     lock ${e.key} for ${Math.round(e.durationMs / 1000)}s reason "${e.reason}"\n`;
      else if (e.kind === 'hook') out += `     run hook ${e.hook}\n`;
      else out += `     tag ${e.tag}\n`;
    }
  }
  out += `verdict: ${describeVerdict(ex.final)}\n`;
  return out;
}
