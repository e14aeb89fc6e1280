import type { DestinationSource, DoorName, Endpoint, ScanResults, SessionCounts, StageEvent } from './stage.js';
import { NO_SCAN_RESULTS } from './stage.js';

/** Facts about the SMTP session; kept across messages of one connection. */
export interface SessionFacts {
  readonly id: string;
  readonly door: DoorName;
  readonly client: Endpoint;
  readonly clientName: string;
  readonly destination?: Endpoint;
  readonly destinationSource: DestinationSource;
  readonly earlytalker: boolean;
  readonly helo?: string;
  readonly heloExtended: boolean;
  readonly tls: { readonly active: boolean; readonly protocol?: string; readonly cipher?: string };
  readonly auth?: { readonly user: string; readonly mechanism?: string };
  readonly startedAt: number;
  /** Messages finished (eom seen) in this session so far. */
  readonly messages: number;
  /** Concurrent sessions at connect, this one included (1/1 when the door does not count them). */
  readonly sessions: SessionCounts;
  /** Recipients accepted over the whole session (all messages; smtp-gated's RCPTS_TOTAL). */
  readonly rcptsTotal: number;
}

/** The envelope of the message in progress; reset by RSET, after each message, and by a new HELO. */
export interface Envelope {
  /** Reverse path without angle brackets; "" for the null sender <>; undefined before MAIL. */
  readonly mailFrom?: string;
  readonly mailParams: Readonly<Record<string, string>>;
  /** SIZE= declared at MAIL, in bytes. */
  readonly declaredSize?: number;
  /** Recipients accepted so far. */
  readonly rcpts: readonly string[];
  /** The recipient being judged at the rcpt stage. */
  readonly rcpt?: string;
}

export interface MessageFacts {
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** Bytes of message content seen so far (headers and body, after dot-unstuffing). */
  readonly size: number;
  readonly scan: ScanResults;
}

/**
 * Everything the rules can see about one transaction. Built only by `reduceTransaction`,
 * the one reducer every door shares, so a rule means the same behind every door.
 */
export interface Transaction {
  readonly session: SessionFacts;
  readonly envelope: Envelope;
  readonly message: MessageFacts;
}

const EMPTY_ENVELOPE: Envelope = Object.freeze({ mailParams: Object.freeze({}), rcpts: Object.freeze([]) as readonly string[] });
const EMPTY_MESSAGE: MessageFacts = Object.freeze({ headers: Object.freeze([]) as MessageFacts['headers'], size: 0, scan: NO_SCAN_RESULTS });

const ONE_SESSION: SessionCounts = Object.freeze({ client: 1, total: 1 });

/** Starts a transaction from the connect event. */
export function startTransaction(event: Extract<StageEvent, { stage: 'connect' }>, id: string, now: number): Transaction {
  const session: SessionFacts = {
    id,
    door: event.door,
    client: event.client,
    clientName: event.clientName ?? 'unknown',
    ...(event.destination ? { destination: event.destination } : {}),
    destinationSource: event.destinationSource ?? 'none',
    earlytalker: event.earlytalker ?? false,
    heloExtended: false,
    tls: { active: false },
    startedAt: now,
    messages: 0,
    sessions: event.sessions ?? ONE_SESSION,
    rcptsTotal: 0,
  };
  return { session, envelope: EMPTY_ENVELOPE, message: EMPTY_MESSAGE };
}

/** Applies one stage event; returns a new transaction (the old one is never changed). */
export function reduceTransaction(tx: Transaction, event: StageEvent): Transaction {
  switch (event.stage) {
    case 'connect':
      return startTransaction(event, tx.session.id, tx.session.startedAt);
    case 'helo':
      // RFC 5321 §4.1.4: a new EHLO/HELO resets the transaction in progress.
      return { session: { ...tx.session, helo: event.name, heloExtended: event.extended }, envelope: EMPTY_ENVELOPE, message: EMPTY_MESSAGE };
    case 'tls': {
      const tls = { active: event.active, ...(event.protocol ? { protocol: event.protocol } : {}), ...(event.cipher ? { cipher: event.cipher } : {}) };
      // RFC 3207 §4.2: after STARTTLS the session starts over from the greeting.
      const { helo: _helo, ...rest } = tx.session;
      return { session: { ...rest, heloExtended: false, tls }, envelope: EMPTY_ENVELOPE, message: EMPTY_MESSAGE };
    }
    case 'auth':
      return { ...tx, session: { ...tx.session, auth: event.mechanism ? { user: event.user, mechanism: event.mechanism } : { user: event.user } } };
    case 'mail': {
      const params = event.params ?? {};
      const size = params['SIZE'] ?? params['size'];
      const declared = size !== undefined && /^\d{1,15}$/.test(size) ? Number(size) : undefined;
      const envelope: Envelope = { mailFrom: event.address, mailParams: params, rcpts: [], ...(declared !== undefined ? { declaredSize: declared } : {}) };
      return { ...tx, envelope, message: EMPTY_MESSAGE };
    }
    case 'rcpt':
      return { ...tx, envelope: { ...tx.envelope, rcpt: event.address } };
    case 'data':
    case 'eoh':
    case 'close':
      return tx;
    case 'header':
      return { ...tx, message: { ...tx.message, headers: [...tx.message.headers, [event.name, event.value] as const] } };
    case 'body':
      return { ...tx, message: { ...tx.message, size: tx.message.size + event.bytes } };
    case 'scan':
      return { ...tx, message: { ...tx.message, scan: { ...tx.message.scan, ...event.results } } };
    case 'eom':
      return event.size === undefined ? tx : { ...tx, message: { ...tx.message, size: event.size } };
    case 'reset':
      return { ...tx, envelope: EMPTY_ENVELOPE, message: EMPTY_MESSAGE };
  }
}

/** Records that the recipient judged at the rcpt stage was accepted (the next hop said 2xx). */
export function acceptRecipient(tx: Transaction): Transaction {
  const rcpt = tx.envelope.rcpt;
  if (rcpt === undefined) return tx;
  const { rcpt: _r, ...rest } = tx.envelope;
  return { ...tx, session: { ...tx.session, rcptsTotal: tx.session.rcptsTotal + 1 }, envelope: { ...rest, rcpts: [...rest.rcpts, rcpt] } };
}

/** Marks the end of a message: counts it and clears the envelope for the next one. */
export function finishMessage(tx: Transaction): Transaction {
  return { session: { ...tx.session, messages: tx.session.messages + 1 }, envelope: EMPTY_ENVELOPE, message: EMPTY_MESSAGE };
}
