/** Renders durations for people; parsing lives with the configuration grammar (lib/daemon/config-units.ts). */

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
