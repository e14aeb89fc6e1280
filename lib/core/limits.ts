/** Bounds every door applies. All sizes in bytes, all times in milliseconds. */
export interface Limits {
  /** Longest SMTP command line, CRLF included (RFC 5321 §4.5.3.1.4 says 512; AUTH lines may be longer). */
  readonly commandLine: number;
  /** Longest line inside DATA, CRLF included (RFC 5321: 1000); longer lines are still counted toward size. */
  readonly dataLine: number;
  /** Largest message accepted; 0 = unlimited. */
  readonly messageSize: number;
  readonly recipients: number;
  /** Commands a client may send ahead of the replies (PIPELINING). */
  readonly pipelineDepth: number;
  readonly sessions: number;
  readonly sessionsPerClient: number;
  readonly connectTimeout: number;
  readonly idleTimeout: number;
  readonly commandTimeout: number;
  readonly dataTimeout: number;
  readonly takeoverTimeout: number;
  /** Commands the door answers itself after taking a session over. */
  readonly takeoverCommands: number;
  readonly errorBudget: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  commandLine: 2048,
  dataLine: 1000,
  messageSize: 50 * 1024 * 1024,
  recipients: 1000,
  pipelineDepth: 100,
  sessions: 10_000,
  sessionsPerClient: 50,
  connectTimeout: 30_000,
  idleTimeout: 300_000,
  commandTimeout: 300_000,
  dataTimeout: 600_000,
  takeoverTimeout: 60_000,
  takeoverCommands: 20,
  errorBudget: 10,
});
