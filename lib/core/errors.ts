import type { SourceLocation } from './verdict.js';

/** Bytes from a peer that break its protocol. Codecs return or throw this, never anything else, for peer input. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(message: string, readonly protocol: string, readonly offset?: number) {
    super(message);
  }
}

/** One problem in a configuration or rule file, with where it is. */
export interface Diagnostic {
  /** Stable code, e.g. "rule/unknown-field", "config/type". */
  readonly code: string;
  readonly message: string;
  readonly location?: SourceLocation;
  /** The offending source line, for the caret display. */
  readonly sourceLine?: string;
  /** How many columns the caret underline spans. */
  readonly length?: number;
  readonly hint?: string;
}

/** Several diagnostics at once: a broken file is reported whole, never half-loaded. */
export class DiagnosticsError extends Error {
  override readonly name = 'DiagnosticsError';
  constructor(readonly diagnostics: readonly Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join('\n'));
  }
}

/** "file:line:col: error[code]: message" plus the source line, a caret and the hint. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.location ? `${d.location.file}:${d.location.line}:${d.location.column}: ` : '';
  let out = `${where}error[${d.code}]: ${d.message}`;
  if (d.sourceLine !== undefined && d.location) {
    const gutter = String(d.location.line);
    out += `\n  ${gutter} | ${d.sourceLine}\n  ${' '.repeat(gutter.length)} | ${' '.repeat(Math.max(0, d.location.column - 1))}${'^'.repeat(Math.max(1, d.length ?? 1))}`;
  }
  if (d.hint) out += `\n  hint: ${d.hint}`;
  return out;
}
