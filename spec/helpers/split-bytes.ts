/** Splits `bytes` at the given fractions (0..1) of its length, in order and without empty pieces: TCP segments. */
export function splitAtFractions(bytes: Buffer, fractions: readonly number[]): Buffer[] {
  const at = [...new Set(fractions.map((f) => Math.floor(f * bytes.length)))].filter((n) => n > 0 && n < bytes.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const n of at) {
    out.push(bytes.subarray(from, n));
    from = n;
  }
  out.push(bytes.subarray(from));
  return out;
}
