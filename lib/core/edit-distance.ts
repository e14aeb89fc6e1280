/**
 * "Did you mean" hints: the one Levenshtein distance and nearest-word search behind the config loader, the rule
 * compiler and the command line. Bounded: words longer than MAX_EDIT_WORD are never "near" (no O(n·m) work on
 * a long input).
 */

/** Longest word compared; a longer one is at distance max(length) from everything. */
export const MAX_EDIT_WORD = 64;

/** Levenshtein distance (insert, delete, substitute; each costs 1), bounded by MAX_EDIT_WORD. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length > MAX_EDIT_WORD || b.length > MAX_EDIT_WORD) return Math.max(a.length, b.length);
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + cost);
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

/** How far a candidate may be from the word typed: a fixed distance or one that grows with the word. */
export type Tolerance = number | ((word: string) => number);

/** The default tolerance: max(2, a third of the word's length). */
export const TYPO_TOLERANCE: Tolerance = (word) => Math.max(2, Math.floor(word.length / 3));

export interface NearestOptions {
  /** Default TYPO_TOLERANCE. */
  readonly tolerance?: Tolerance;
  /** Compare lower-cased (default true). */
  readonly ignoreCase?: boolean;
}

/** The candidate nearest to `word` (the first of equals), if it is within the tolerance; else undefined. */
export function nearest(word: string, candidates: Iterable<string>, options: NearestOptions = {}): string | undefined {
  const fold = (options.ignoreCase ?? true) ? (s: string) => s.toLowerCase() : (s: string) => s;
  const tolerance = options.tolerance ?? TYPO_TOLERANCE;
  const limit = typeof tolerance === 'number' ? tolerance : tolerance(word);
  const w = fold(word);
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(w, fold(c));
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= limit ? best : undefined;
}
