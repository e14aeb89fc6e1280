/**
 * Scan read-ahead: while scanners take a message, a session may read the client ahead of a slower upstream,
 * so the scanners get the message at the client's pace and their verdict is ready sooner (clamd scans an
 * INSTREAM only after its last byte). What the upstream has not taken yet waits in that socket's write buffer.
 * The bytes waiting are bounded per session and, across all sessions of a door, by one budget; a session that
 * would exceed either waits for its upstream to drain, as it does without read-ahead.
 */

/** Defaults: per session, and for all sessions of a door. */
export const DEFAULT_SCAN_READ_AHEAD = 16 * 1024 * 1024;
export const DEFAULT_SCAN_READ_AHEAD_TOTAL = 64 * 1024 * 1024;

export class ReadAheadBudget {
  private used = 0;

  constructor(
    /** Most bytes one session may have waiting for its upstream. */
    readonly perSession: number,
    /** Most bytes all sessions together may have waiting. */
    readonly total: number,
  ) {}

  /** Bytes currently claimed by all sessions. */
  get claimed(): number {
    return this.used;
  }

  /**
   * Moves a session's claim from `held` to `wanted` bytes. Returns the new claim: `wanted` when it fits within
   * both bounds, else `held` unchanged (the caller then waits for its upstream to drain and releases).
   */
  move(held: number, wanted: number): number {
    if (wanted > held && (wanted > this.perSession || this.used - held + wanted > this.total)) return held;
    this.used += wanted - held;
    return wanted;
  }

  /** Gives a session's whole claim back; returns 0 (the new claim). */
  release(held: number): number {
    this.used -= held;
    return 0;
  }
}
