/** Numbers with units in rule files: sizes (10MB) and durations (1h). */

/** Binary multiples, as mail admins read them: 1KB = 1024 bytes. */
export const SIZE_UNITS: Readonly<Record<string, number>> = { b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };
/** Durations in milliseconds. */
export const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export type UnitKind = 'size' | 'duration' | 'none';

export interface ParsedNumber {
  readonly value: number;
  readonly unit: UnitKind;
  readonly unitText: string;
}

const NUM = /^(\d{1,15}(?:\.\d{1,6})?)([A-Za-z]*)$/;

/** Parses "10", "7.5", "10MB", "1h"; returns an error text for a bad unit, undefined if not a number at all. */
export function parseNumberWithUnit(text: string): ParsedNumber | { error: string; hint: string } | undefined {
  const m = NUM.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  const u = (m[2] ?? '').toLowerCase();
  if (u === '') return { value: n, unit: 'none', unitText: '' };
  const s = SIZE_UNITS[u];
  const d = DURATION_UNITS[u];
  // "m" is minutes; a size in megabytes is written MB.
  if (d !== undefined) return { value: n * d, unit: 'duration', unitText: m[2] ?? '' };
  if (s !== undefined) return { value: n * s, unit: 'size', unitText: m[2] ?? '' };
  return { error: `unknown unit "${m[2]}" in ${text}`, hint: 'sizes: B, KB, MB, GB; durations: s, m, h, d, w' };
}

export function isParsedNumber(x: ReturnType<typeof parseNumberWithUnit>): x is ParsedNumber {
  return x !== undefined && 'value' in x;
}

/** Parses a lock duration: "1h", "30m", "90s", "2d" or "forever". */
export function parseDuration(text: string): number | { error: string; hint: string } {
  if (text === 'forever') return 100 * 365 * 86_400_000;
  const p = parseNumberWithUnit(text);
  const hint = 'write a number and a unit: 30s, 10m, 1h, 2d, or forever';
  if (p === undefined) return { error: `"${text}" is not a duration`, hint };
  if (!isParsedNumber(p)) return p;
  if (p.unit !== 'duration') return { error: `"${text}" is not a duration`, hint };
  if (p.value <= 0) return { error: 'a lock duration must be positive', hint };
  return p.value;
}
