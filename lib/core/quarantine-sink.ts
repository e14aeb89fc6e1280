/**
 * Where a door puts a message a `quarantine` verdict holds: the daemon's quarantine store
 * (lib/daemon/quarantine-store.ts's QuarantineStore satisfies this interface). A door that can keep the whole
 * message (filter, intercept in hold mode) stores it here, with the verdict's header mutations applied, and tells
 * the client 250; a door without a sink refuses or defers instead, so a message is never lost silently.
 */
import type { Readable } from 'node:stream';
import type { DoorName, Endpoint, ScanResults } from './stage.js';

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

export interface QuarantineSink {
  /**
   * Stores the message (CRLF lines, dot-unstuffed) as a Buffer, a stream, or the path of a file to copy; resolves
   * with the entry's id once it is durable, rejects if it could not be stored (the door then defers the message).
   */
  add(meta: QuarantineSinkMeta, message: Buffer | Readable | { path: string }): Promise<{ readonly id: string }>;
}
