/**
 * Source positions and diagnostics for rule files: every problem is reported as file:line:col with the
 * offending line, a caret and a hint (lib/core/errors.ts formats them).
 */
import type { Diagnostic } from '../core/errors.js';
import { nearest } from '../core/edit-distance.js';
import type { SourceLocation } from '../core/verdict.js';

/** A span in one rule file. */
export interface Span {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly length: number;
}

export class SourceFile {
  readonly lines: readonly string[];
  constructor(readonly file: string, readonly text: string) {
    this.lines = text.split(/\r?\n/);
  }
  lineText(line: number): string {
    return this.lines[line - 1] ?? '';
  }
}

/** Collects diagnostics for a whole compilation; the compiler throws them all at once at the end. */
export class DiagnosticSink {
  readonly items: Diagnostic[] = [];
  private readonly files = new Map<string, SourceFile>();
  /** Stop collecting past this many (a garbage file must not produce millions). */
  static readonly MAX = 200;

  addFile(src: SourceFile): void {
    this.files.set(src.file, src);
  }

  error(code: string, message: string, span: Span | undefined, hint?: string): void {
    if (this.items.length > DiagnosticSink.MAX) return;
    if (this.items.length === DiagnosticSink.MAX) {
      this.items.push({ code: 'rule/too-many-errors', message: `more than ${DiagnosticSink.MAX} errors; the rest are not shown` });
      return;
    }
    if (!span) {
      this.items.push(hint ? { code, message, hint } : { code, message });
      return;
    }
    const src = this.files.get(span.file);
    const sourceLine = src?.lineText(span.line);
    const lineLen = sourceLine?.length ?? 0;
    const length = Math.max(1, Math.min(span.length, Math.max(1, lineLen - span.column + 1)));
    const d: Diagnostic = {
      code,
      message,
      location: { file: span.file, line: span.line, column: span.column },
      ...(sourceLine !== undefined ? { sourceLine } : {}),
      length,
      ...(hint ? { hint } : {}),
    };
    this.items.push(d);
  }

  get count(): number {
    return this.items.length;
  }
}

export function spanLocation(span: Span): SourceLocation {
  return { file: span.file, line: span.line, column: span.column };
}

/** "did you mean `x`?" for the candidate nearest to `word` (lib/core/edit-distance.ts), or undefined. */
export function didYouMean(word: string, candidates: Iterable<string>, what = ''): string | undefined {
  const n = nearest(word, candidates);
  return n === undefined ? undefined : `did you mean ${what}${what ? ' ' : ''}\`${n}\`?`;
}
