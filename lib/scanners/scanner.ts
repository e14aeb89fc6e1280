/**
 * The contract between doors and content scanners. A door starts one ScanJob per message when DATA begins,
 * writes the message bytes (headers and body, dot-unstuffed, CRLF line ends) as they stream, and at the end of
 * the message awaits `end()` before it evaluates the eom rules. Scanners never see SMTP framing.
 */
import type { Endpoint, ScanResults } from '../core/stage.js';

export interface ScanMeta {
  readonly sessionId: string;
  readonly client: Endpoint;
  readonly helo?: string;
  readonly sender?: string;
  readonly recipients: readonly string[];
  readonly destination?: Endpoint;
}

export interface ScanJob {
  /** Feeds the next chunk of the message. Never throws; a failing scanner records its failure for end(). */
  write(chunk: Buffer): void;
  /** Resolves when every enabled scanner answered, was skipped or timed out. Never rejects. */
  end(): Promise<ScanOutcome>;
  /** Abandons the scan (client gone, message rejected); frees sockets, files and processes. */
  abort(): void;
  /** Bytes written but not yet taken by the scanners (waiting for a scanner's socket or the spool file). */
  readonly backlog: number;
  /**
   * Resolves once that backlog is down to SCAN_BACKLOG_RESUME or less, or the scanners stopped taking bytes
   * (finished, failed, aborted).
   */
  drained(): Promise<void>;
}

/**
 * A door stops reading the message's source while a job's backlog is above this, until it has drained: a scanner
 * slower than the client (or stopped) then slows the client instead of filling memory.
 */
export const SCAN_BACKLOG_LIMIT = 4 * 1024 * 1024;
/** ...and reads again once it is down to this (half), so the scanners never run dry while the door waits. */
export const SCAN_BACKLOG_RESUME = SCAN_BACKLOG_LIMIT / 2;

export interface ScanOutcome {
  readonly results: ScanResults;
  /** The external filter command's rewritten message, when the filter ran in rewrite mode and changed it. */
  readonly rewritten?: { readonly path: string; readonly size: number };
}

export interface ScannerSet {
  /** False when no scanner is configured: doors then skip scanning entirely. */
  readonly enabled: boolean;
  start(meta: ScanMeta): ScanJob;
  close(): Promise<void>;
}

export const NO_SCANNERS: ScannerSet = {
  enabled: false,
  start: () => ({ write: () => undefined, end: async () => ({ results: { skipped: [], failed: {} } }), abort: () => undefined, backlog: 0, drained: async () => undefined }),
  close: async () => undefined,
};
