/** Durations ("90s", "5m", "1h", "2d", "250ms") and sizes ("512", "10KB", "50MB", "1GB") as users write them. */

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };

/** Milliseconds, or undefined when the text is not a duration. A bare number means seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d{1,12}(?:\.\d{1,6})?)\s*(ms|s|m|h|d|w)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = DURATION_UNITS[(m[2] ?? 's').toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

/** Bytes (binary units: 1KB = 1024), or undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d{1,15}(?:\.\d{1,6})?)\s*([kmg]?b?)\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

/** "1h", "90s", "1d2h": the shortest exact rendering. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms % 1000 !== 0) return `${ms}ms`;
  let s = ms / 1000;
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.join('');
}
