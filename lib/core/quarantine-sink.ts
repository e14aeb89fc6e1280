/**
 * Where a door puts a message a `quarantine` verdict holds: the daemon's quarantine store
 * (lib/daemon/quarantine-store.ts's QuarantineStore satisfies this interface). A door that can keep the whole
 * message (filter, intercept in hold mode) stores it here, with the verdict's header mutations applied, and tells
 * the client 250; a door without a sink refuses or defers instead, so a message is never lost silently.
 */
import type { Readable } from 'node:stream';
import type { DoorName, Endpoint, ScanResults } from './stage.js';
import type { Transaction } from './transaction.js';

/** The sidecar facts stored with a quarantined message. */
export interface QuarantineSinkMeta {
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly client: Endpoint;
  readonly clientName?: string;
  readonly helo?: string;
  readonly sessionId: string;
  readonly door: DoorName;
  readonly reason: string;
  readonly rule?: string;
  readonly scan?: ScanResults;
}

/** The sidecar facts from a transaction (its envelope, client and scan results) and the verdict's reason and rule. */
export function quarantineMetaFromTransaction(tx: Transaction, reason: string, rule?: string): QuarantineSinkMeta {
  const s = tx.session;
  return {
    sender: tx.envelope.mailFrom ?? '',
    recipients: tx.envelope.rcpts,
    client: s.client,
    clientName: s.clientName,
    ...(s.helo !== undefined ? { helo: s.helo } : {}),
    sessionId: s.id,
    door: s.door,
    reason,
    ...(rule !== undefined ? { rule } : {}),
    scan: tx.message.scan,
  };
}

export interface QuarantineSink {
  /**
   * Stores the message (CRLF lines, dot-unstuffed) as a Buffer, a stream, or the path of a file to copy; resolves
   * with the entry's id once it is durable, rejects if it could not be stored (the door then defers the message).
   */
  add(meta: QuarantineSinkMeta, message: Buffer | Readable | { path: string }): Promise<{ readonly id: string }>;
}
