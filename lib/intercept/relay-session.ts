/**
 * One intercepted SMTP session: relays the client's commands to the upstream MTA and the upstream's replies back,
 * feeding stage events to the policy engine and acting on its verdicts; streams DATA (the final "." held until the
 * eom verdict); takes the session over after a refusal or an upstream failure.
 *
 * Ordering: client lines are handled one at a time, in order. Each forwarded command and each locally answered
 * one gets an entry in a bounded FIFO; upstream replies are matched to the FIFO head, and local answers are
 * written when they reach the head, so the client always sees replies in command order (PIPELINING).
 * Barrier commands (EHLO/HELO, DATA, AUTH and its SASL lines, STARTTLS, QUIT, end of data) stop command handling
 * until their reply came back, because what follows them depends on that reply.
 */
import type { Socket } from 'node:net';
import { formatReply, GENERIC_TEMPFAIL, type SmtpReply } from '../core/smtp-reply.js';
import type { Endpoint, DestinationSource, RuleStage, SessionCounts, StageEvent } from '../core/stage.js';
import { acceptRecipient, finishMessage, reduceTransaction, startTransaction, type Transaction } from '../core/transaction.js';
import type { HeaderMutation, Verdict } from '../core/verdict.js';
import type { Logger } from '../core/logger.js';
import { quarantineMetaFromTransaction } from '../core/quarantine-sink.js';
import { renderAddress } from '../core/address-privacy.js';
import { lockKey } from '../policy/lock-store.js';
import { SCAN_BACKLOG_LIMIT, type ScanJob } from '../scanners/scanner.js';
import { waitForRoom } from '../core/socket-room.js';
import type { DoorDeps } from '../daemon/door.js';
import { LineReader, type LineEvent } from '../smtp/line-reader.js';
import { parseCommand, strayByte, type SmtpCommand } from '../smtp/command-parser.js';
import { ReplyParser, type ParsedReply } from '../smtp/reply-parser.js';
import { editEhloReply } from '../smtp/ehlo-capabilities.js';
import { DataFramer, type BareLineEndingPolicy } from '../smtp/data-framer.js';
import { HeaderCollector } from '../smtp/header-collector.js';
import { AuthTracker } from './auth-tracker.js';
import { relayOpaque } from './opaque-relay.js';
import { REPLIES, TAKEOVER_REASONS, TAKEOVER_REPLIES } from './intercept-replies.js';
import { TakeoverResponder } from './takeover-responder.js';
import { renderLeadingHeaders } from './trace-header.js';
import { DotStuffState, HeldMessage } from './held-message.js';
import type { ReadAheadBudget } from './read-ahead.js';

export type StarttlsPolicy = 'relay' | 'forbid';

export interface RelaySessionOptions {
  readonly id: string;
  readonly client: Endpoint;
  readonly destination: Endpoint;
  readonly source: DestinationSource;
  /** Client bytes already read (after a PROXY header). */
  readonly head: Buffer;
  readonly starttls: StarttlsPolicy;
  readonly bareLineEndings: BareLineEndingPolicy;
  /** Most header bytes collected for header/eoh rules. */
  readonly headerCap: number;
  /** Opens the upstream connection (the transparent engineer's connectUpstream, or a plain connect). */
  readonly connect: (dest: Endpoint, opts: { transparentSource?: Endpoint; timeoutMs: number }) => Promise<Socket>;
  readonly transparentSource?: Endpoint;
  /** Hold the upstream's greeting this long (ms) so that early talkers show themselves (0: relay at once). */
  readonly greetDelay?: number;
  /** Concurrent sessions at the door when this one started, this one included (for the connect rules). */
  readonly sessions?: SessionCounts;
  /**
   * Hold mode: keep messages up to this many content bytes until the eom verdict, then send them with every
   * header mutation applied (quarantine possible); larger ones fall back to streaming. 0 or absent: stream.
   */
  readonly holdMessagesUpTo?: number;
  /** Held bytes kept in memory before spilling to a file (default 64 KiB). */
  readonly holdMemory?: number;
  /** The private directory (0700) for hold spill files, asked for at the first spill. */
  readonly holdDir?: () => string;
  /** While scanners run: how far the client may be read ahead of a slower upstream (absent: not at all). */
  readonly readAhead?: ReadAheadBudget;
}

type Phase = 'connecting' | 'command' | 'data' | 'takeover' | 'opaque' | 'closed';

type EntryKind = 'greeting' | 'helo' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'eom' | 'rset' | 'quit' | 'auth' | 'authdata' | 'starttls' | 'other';

interface Entry {
  readonly kind: EntryKind;
  /** A reply we answer ourselves, written when the entry reaches the FIFO head. */
  local?: string;
  /** For local entries: close the client connection after writing. */
  closeAfter?: boolean;
  /** Waiting for our own decision (end of data) before it is either local or sent upstream. */
  pending?: boolean;
  /** RCPT: the recipient, recorded in the envelope if the upstream accepts it. */
  address?: string;
}

/** Longest AUTH command or SASL response line, CRLF included (RFC 4954 §4). */
const SASL_LINE = 12288 + 2;
/** Upstream reply lines are short; a generous cap still bounds memory. */
const REPLY_LINE_CAP = 4096;
/** Client bytes read ahead while commands wait (beyond this the client socket is paused). */
const READ_AHEAD = 64 * 1024;
/** Reply bytes queued for a client that does not read them, beyond which its commands are no longer read. */
const WRITE_HIGH = 64 * 1024;

let sessionCounter = 0;
const processTag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
export function newSessionId(): string {
  return `${processTag}-${(++sessionCounter).toString(36)}`;
}

export class RelaySession {
  private phase: Phase = 'connecting';
  private tx: Transaction;
  private readonly log: Logger;
  private upstream: Socket | undefined;
  private readonly clientReader: LineReader;
  private readonly upstreamReader = new LineReader(REPLY_LINE_CAP);
  private readonly replyParser = new ReplyParser();
  private readonly queue: Entry[] = [];
  /** A handler is running (verdict awaited) for the current client line. */
  private busy = false;
  /** A barrier command is outstanding: no more client lines until the FIFO is empty. */
  private barrier = false;
  private enhanced = false;
  private earlytalker = false;
  private greetingRelayed = false;
  private greetingSeen = false;
  private upstreamEnded = false;
  private waitingDrain = false;
  /** A reply that ends the session is queued: read no more commands. */
  private closing = false;
  private errors = 0;
  private takeover: TakeoverResponder | undefined;
  private takeoverReason: SmtpReply = TAKEOVER_REASONS.policy;
  private upstreamOpen = false;
  private upstreamQuitting = false;
  private timer: NodeJS.Timeout | undefined;
  private timerMs = 0;
  private takeoverDeadline: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private bytesIn = 0;
  private bytesOut = 0;
  private messages = 0;
  private closeReason = 'client';
  /** Rules are skipped for the rest of the message ('message') or session ('session') after an accept verdict. */
  private skipRules: 'none' | 'message' | 'session' = 'none';
  private sessionHeaders: HeaderMutation[] = [];
  /** Rules that fired for the message in progress (for its one EOM record). */
  private messageRules: string[] = [];
  private messageHeaders: HeaderMutation[] = [];
  private readonly auth = new AuthTracker();
  // DATA state
  private framer: DataFramer | undefined;
  private scanJob: ScanJob | undefined;
  /** Bytes this session has claimed from the door's read-ahead budget (waiting in the upstream's buffer). */
  private readAheadClaim = 0;
  /** Why reading the client is paused during DATA: its bytes wait for the upstream or the scanners to drain. */
  private readonly dataHolds = new Set<'upstream' | 'scanner'>();
  private headers: HeaderCollector | undefined;
  private contentVerdicts: Promise<Verdict | undefined>[] = [];
  private dataProblem: 'size' | 'bare' | 'upstream' | undefined;
  private dataRest: Buffer | undefined;
  private pendingHead: Buffer | undefined;
  // Hold mode state
  /** The message being held (hold mode, until it is sent, stored, dropped, or falls back to streaming). */
  private held: HeldMessage | undefined;
  /** Header mutations of the data stage and before (the trace header first), for the held message. */
  private leadMutations: HeaderMutation[] = [];
  /** A fallback to streaming is writing the held part upstream; forward bytes wait in flushQueue meanwhile. */
  private flushing: Promise<void> | undefined;
  private flushQueue: Buffer[] = [];
  private holdTimer: NodeJS.Timeout | undefined;
  /** Hold mode: the filter command's rewritten message (sent instead of the held one) and the job keeping it. */
  private rewritten: { readonly path: string; readonly job: ScanJob } | undefined;
  /** The message fell back to streaming (eom mutations and quarantine are then not applicable). */
  private streamed = true;
  private resolveClosed!: () => void;
  /** Resolves when both sockets are closed. */
  readonly closed: Promise<void> = new Promise((r) => (this.resolveClosed = r));

  constructor(
    private readonly client: Socket,
    private readonly opts: RelaySessionOptions,
    private readonly deps: DoorDeps,
  ) {
    this.log = deps.logger.child({ session: opts.id });
    // AUTH lines may be longer than other commands (RFC 4954 §4: 12288 octets); the others are held to the limit below.
    this.clientReader = new LineReader(Math.max(deps.limits.commandLine, SASL_LINE));
    this.tx = startTransaction(
      { stage: 'connect', door: 'intercept', client: opts.client, destination: opts.destination, destinationSource: opts.source, ...(opts.sessions ? { sessions: opts.sessions } : {}) },
      opts.id,
      this.startedAt,
    );
  }

  /** The phase, read fresh (defeats narrowing across awaits and callbacks). */
  private now(): Phase {
    return this.phase;
  }

  get id(): string {
    return this.opts.id;
  }

  /** Starts the session: lock check, upstream connect, greeting, connect verdict. */
  start(): void {
    const { client } = this;
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    client.on('error', (err: NodeJS.ErrnoException) => this.log.debug({ code: err.code }, 'client socket error'));
    client.on('close', () => this.onClientClose());
    this.log.info({ event: 'NEW', src: fmt(this.opts.client), dst: fmt(this.opts.destination), found: this.opts.source }, 'session start');
    this.armTimer(this.deps.limits.connectTimeout);
    if (this.opts.head.length > 0) this.onClientData(this.opts.head);
    void this.connect();
  }

  /** Ends the session now (door stop after drain): 421 to the client, both sockets closed. */
  abort(reason: string): void {
    if (this.phase === 'closed') return;
    this.closeReason = reason;
    if (this.phase !== 'opaque' && this.phase !== 'data') this.writeClient(formatReply({ code: 421, enhanced: '4.3.2', lines: [`${this.deps.hostname} Service shutting down, closing connection`] }, this.enhanced));
    this.shutdown();
  }

  // ---------------------------------------------------------------- connect and greeting

  private async connect(): Promise<void> {
    const { deps, opts } = this;
    const locked = await this.lockedEntry();
    if (this.phase === 'closed') return;
    if (locked) {
      this.log.info({ event: 'LOCKED', key: locked }, 'client is locked: refused at connect');
      this.writeClient(formatReply({ code: 554, enhanced: '5.7.1', lines: [`${deps.hostname} Access denied for your host, try again later`] }, false));
      this.greetingRelayed = true;
      this.enterTakeover(TAKEOVER_REASONS.locked, 'locked');
      this.pump(); // anything the client sent early is answered by the takeover
      return;
    }
    let socket: Socket;
    try {
      socket = await opts.connect(opts.destination, { timeoutMs: deps.limits.connectTimeout, ...(opts.transparentSource ? { transparentSource: opts.transparentSource } : {}) });
    } catch (err) {
      if (this.now() === 'closed') return;
      this.log.warn({ event: 'UPSTREAM', dst: fmt(opts.destination), error: errText(err) }, 'upstream unreachable: taking the session over');
      await this.greetOurselves(TAKEOVER_REASONS.upstreamUnreachable, 'upstream-unreachable');
      return;
    }
    if (this.now() === 'closed') {
      socket.destroy();
      return;
    }
    this.upstream = socket;
    this.upstreamOpen = true;
    socket.on('data', (chunk: Buffer) => this.onUpstreamData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.log.debug({ code: err.code }, 'upstream socket error'));
    socket.on('close', () => this.onUpstreamClose(socket));
    this.queue.push({ kind: 'greeting' });
  }

  /** No upstream: our own 220 after the connect verdict, then takeover with the reason. */
  private async greetOurselves(reason: SmtpReply, why: string): Promise<void> {
    const verdict = await this.evaluate('connect', this.connectEvent());
    if (this.phase === 'closed') return;
    if (verdict && (verdict.action === 'reject' || verdict.action === 'tempfail')) {
      const reply = this.refusalReply(verdict, 554);
      this.writeClient(formatReply(reply, false));
      if (reply.code === 421) return this.closeAfter421();
    } else {
      this.writeClient(`220 ${this.deps.hostname} ESMTP\r\n`);
    }
    this.greetingRelayed = true;
    this.enterTakeover(reason, why);
    this.pump();
  }

  private connectEvent(): Extract<StageEvent, { stage: 'connect' }> {
    return {
      stage: 'connect',
      door: 'intercept',
      client: this.opts.client,
      destination: this.opts.destination,
      destinationSource: this.opts.source,
      earlytalker: this.earlytalker,
      ...(this.opts.sessions ? { sessions: this.opts.sessions } : {}),
    };
  }

  private async onGreeting(reply: ParsedReply): Promise<void> {
    const pause = this.opts.greetDelay ?? 0;
    if (pause > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, pause);
        void this.closed.then(() => {
          clearTimeout(t);
          resolve();
        });
      });
      if (this.now() === 'closed') return;
    }
    this.tx = reduceTransaction(this.tx, this.connectEvent());
    if (this.earlytalker) this.log.info({ event: 'EARLYTALKER' }, 'client spoke before the greeting');
    const verdict = await this.evaluate('connect', this.connectEvent());
    if (this.phase === 'closed') return;
    this.greetingRelayed = true;
    if (verdict && isRefusal(verdict)) {
      const reply = this.refusalReply(verdict, 554);
      this.writeClient(formatReply(reply, false));
      if (reply.code === 421) return this.closeAfter421();
      this.enterTakeover(TAKEOVER_REASONS.policy, 'connect refused');
      return;
    }
    if (verdict?.action === 'accept') this.skipRules = 'session';
    this.collectHeaders(verdict, 'session');
    this.writeClient(reply.raw);
    if (reply.code !== 220) {
      // The upstream refused the session (554/421): relay it; the client will QUIT.
      this.log.info({ event: 'GREETING', code: reply.code }, 'upstream refused the session');
    }
    this.phase = 'command';
    this.armTimer(this.deps.limits.idleTimeout);
    this.pump();
  }

  // ---------------------------------------------------------------- client input

  private onClientData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    this.touch();
    switch (this.phase) {
      case 'connecting':
        if (!this.greetingRelayed) this.earlytalker = true;
        this.clientReader.push(chunk);
        if (this.clientReader.buffered > READ_AHEAD) this.client.pause();
        return;
      case 'data':
        this.onDataChunk(chunk);
        return;
      case 'command':
      case 'takeover':
        this.clientReader.push(chunk);
        if (this.clientReader.buffered > READ_AHEAD) this.client.pause();
        this.pump();
        return;
      default:
        return;
    }
  }

  /** Handles buffered client lines while nothing blocks them. */
  private pump(): void {
    while (!this.busy && !this.barrier && (this.phase === 'command' || this.phase === 'takeover')) {
      if (this.queue.length >= this.deps.limits.pipelineDepth || this.closing) break; // FIFO full or closing: hold the client
      if (this.client.writableLength > WRITE_HIGH) {
        // The client does not read its replies: stop reading its commands until it does.
        if (!this.waitingDrain) {
          this.waitingDrain = true;
          this.client.pause();
          this.client.once('drain', () => {
            this.waitingDrain = false;
            this.client.resume();
            this.pump();
          });
        }
        return;
      }
      const ev = this.clientReader.next();
      if (!ev) break;
      const p = this.phase === 'takeover' ? this.onTakeoverLine(ev) : this.onCommandLine(ev);
      if (p) {
        this.busy = true;
        p.then(
          () => {
            this.busy = false;
            this.pump();
          },
          (err: unknown) => {
            this.busy = false;
            this.log.error({ error: errText(err) }, 'internal error handling a command');
            this.fail();
          },
        );
        return;
      }
    }
    if (this.clientReader.buffered <= READ_AHEAD && this.client.isPaused() && this.phase !== 'data' && !this.waitingDrain) this.client.resume();
  }

  /** One client line in relay mode. Returns a promise when it awaits a verdict. */
  private onCommandLine(ev: LineEvent): Promise<void> | undefined {
    if (ev.kind === 'too-long' && this.auth.awaitingResponse) {
      // The upstream waits for a SASL response: cancel the exchange (RFC 4954 §4 "*") so both sides stay in step;
      // the client gets the upstream's answer to the cancellation.
      this.auth.awaitingResponse = false;
      this.log.info({ event: 'LONGLINE', bytes: ev.bytes }, 'SASL response too long: authentication cancelled');
      this.forward(Buffer.from('*'), 'authdata', true);
      return undefined;
    }
    if (ev.kind === 'too-long' || (ev.line.length + 2 > this.deps.limits.commandLine && !this.auth.awaitingResponse && !isAuthLine(ev.line))) {
      const bytes = ev.kind === 'too-long' ? ev.bytes : ev.line.length + 2;
      this.log.info({ event: 'LONGLINE', bytes }, 'command line too long: not forwarded');
      return this.localError(REPLIES.lineTooLong);
    }
    // A CR or NUL inside a line is where a server might end the line or the string where we did not: never forwarded.
    const stray = strayByte(ev.line);
    if (this.auth.awaitingResponse) {
      if (stray === undefined) {
        this.auth.response(ev.line.toString('latin1'));
        this.forward(ev.line, 'authdata', true);
        return undefined;
      }
      // Cancelled as for a too-long response: the client gets the upstream's answer to "*".
      this.auth.awaitingResponse = false;
      this.log.info({ event: 'BADCMD', problem: `${stray} in a SASL response` }, 'SASL response with a stray byte: authentication cancelled');
      this.forward(Buffer.from('*'), 'authdata', true);
      return undefined;
    }
    if (stray !== undefined) {
      this.log.info({ event: 'BADCMD', problem: `${stray} in a command line` }, 'malformed command: not forwarded');
      return this.localError(REPLIES.strayByte);
    }
    const cmd = parseCommand(ev.line);
    switch (cmd.verb) {
      case 'INVALID':
        this.log.info({ event: 'BADCMD', problem: cmd.problem }, 'malformed command: not forwarded');
        return this.localError(/needs|address|parameter|SIZE|BODY|recipient|garbage/.test(cmd.problem) ? REPLIES.params : REPLIES.syntax);
      case 'XCLIENT':
      case 'XFORWARD':
        this.log.warn({ event: 'REFUSED', verb: cmd.verb }, 'client sent XCLIENT/XFORWARD: refused');
        return this.localError(REPLIES.notPermitted);
      case 'BDAT':
      case 'XEXCH50':
        return this.localError(REPLIES.notImplemented);
      case 'STARTTLS':
        if (this.opts.starttls === 'forbid') return this.localError(REPLIES.starttlsForbidden);
        this.forward(ev.line, 'starttls', true);
        return undefined;
      case 'HELO':
      case 'EHLO':
        return this.onHelo(ev.line, cmd);
      case 'MAIL':
        return this.onMail(ev.line, cmd);
      case 'RCPT':
        return this.onRcpt(ev.line, cmd);
      case 'DATA':
        return this.onData(ev.line);
      case 'RSET':
        this.resetMessage();
        this.tx = reduceTransaction(this.tx, { stage: 'reset' });
        this.forward(ev.line, 'rset', false);
        return undefined;
      case 'QUIT':
        this.forward(ev.line, 'quit', true);
        return undefined;
      case 'AUTH':
        this.auth.start(cmd.mechanism, cmd.initial);
        this.forward(ev.line, 'auth', true);
        return undefined;
      default:
        this.forward(ev.line, 'other', false);
        return undefined;
    }
  }

  private async onHelo(line: Buffer, cmd: Extract<SmtpCommand, { verb: 'HELO' | 'EHLO' }>): Promise<void> {
    const event: StageEvent = { stage: 'helo', name: cmd.name, extended: cmd.verb === 'EHLO' };
    this.tx = reduceTransaction(this.tx, event);
    this.resetMessage();
    this.log.info({ event: cmd.verb, helo: cmd.name }, 'helo');
    const verdict = await this.evaluate('helo', event);
    if (this.phase !== 'command') return;
    if (verdict && isRefusal(verdict)) return this.refuse(verdict, 'helo', true);
    if (verdict?.action === 'accept') this.skipRules = 'session';
    this.collectHeaders(verdict, 'session');
    this.forward(line, cmd.verb === 'EHLO' ? 'ehlo' : 'helo', true);
  }

  private async onMail(line: Buffer, cmd: Extract<SmtpCommand, { verb: 'MAIL' | 'RCPT' }>): Promise<void> {
    const declared = cmd.params['SIZE'];
    const limit = this.deps.limits.messageSize;
    if (limit > 0 && declared !== undefined && Number(declared) > limit) {
      // RFC 1870 §6.1: refuse a declared size over the limit at once (not forwarded; the session goes on).
      this.log.info({ event: 'MAIL', from: renderAddress(cmd.address), declared: Number(declared), limit }, 'declared size over the limit');
      this.pushLocal('mail', formatReply(REPLIES.tooBig, this.enhanced));
      return;
    }
    const event: StageEvent = { stage: 'mail', address: cmd.address, params: cmd.params };
    this.tx = reduceTransaction(this.tx, event);
    this.resetMessage();
    this.log.info({ event: 'MAIL', from: renderAddress(cmd.address) }, 'mail from');
    const verdict = await this.evaluate('mail', event);
    if (this.phase !== 'command') return;
    if (verdict && isRefusal(verdict)) return this.refuse(verdict, 'mail', true);
    if (verdict?.action === 'accept' && this.skipRules === 'none') this.skipRules = 'message';
    this.collectHeaders(verdict, 'message');
    this.forward(line, 'mail', false);
  }

  private async onRcpt(line: Buffer, cmd: Extract<SmtpCommand, { verb: 'MAIL' | 'RCPT' }>): Promise<void> {
    if (this.tx.envelope.rcpts.length + this.outstanding('rcpt') >= this.deps.limits.recipients) {
      this.log.info({ event: 'RCPT', to: renderAddress(cmd.address), refused: 'too many recipients' }, 'recipient refused');
      this.pushLocal('rcpt', formatReply(REPLIES.tooManyRecipients, this.enhanced));
      return;
    }
    const event: StageEvent = { stage: 'rcpt', address: cmd.address, params: cmd.params };
    this.tx = reduceTransaction(this.tx, event);
    const verdict = await this.evaluate('rcpt', event);
    if (this.phase !== 'command') return;
    if (verdict && isRefusal(verdict)) {
      // A single recipient refused: answered here, never forwarded; the session goes on.
      this.log.info({ event: 'RCPT', to: renderAddress(cmd.address), verdict: verdict.action, rules: ruleNames(verdict) }, 'recipient refused by policy');
      const reply = this.refusalReply(verdict, 550);
      // 421 closes the channel whatever command it answers (RFC 5321 §3.8).
      this.pushLocal('rcpt', formatReply(reply, this.enhanced), reply.code === 421);
      if (reply.code === 421) this.closeReason = 'refused-421';
      return;
    }
    this.collectHeaders(verdict, 'message');
    this.forward(line, 'rcpt', false, cmd.address);
  }

  private async onData(line: Buffer): Promise<void> {
    // The data rules must see every recipient the upstream accepted: wait for the pipelined RCPT replies.
    await this.queueDrained();
    if (this.phase !== 'command') return;
    const verdict = await this.evaluate('data', { stage: 'data' });
    if (this.phase !== 'command') return;
    if (verdict && isRefusal(verdict)) return this.refuse(verdict, 'data', true);
    if (verdict?.action === 'accept' && this.skipRules === 'none') this.skipRules = 'message';
    this.collectHeaders(verdict, 'message');
    this.forward(line, 'data', true);
  }

  /** A local error reply in order; too many of them end the session. */
  private localError(reply: SmtpReply): undefined {
    if (++this.errors > this.deps.limits.errorBudget) {
      this.log.info({ event: 'ERRORS', errors: this.errors }, 'error budget exhausted');
      this.pushLocal('other', formatReply(REPLIES.errorBudget, this.enhanced), true);
      this.enterTakeover(TAKEOVER_REASONS.policy, 'error budget');
      return undefined;
    }
    this.pushLocal('other', formatReply(reply, this.enhanced));
    return undefined;
  }

  private readonly drainWaiters: Array<() => void> = [];

  /** Resolves once every outstanding command was answered (at once if none is). */
  private queueDrained(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private outstanding(kind: EntryKind): number {
    let n = 0;
    for (const e of this.queue) if (e.kind === kind && e.local === undefined) n++;
    return n;
  }

  private forward(line: Buffer, kind: EntryKind, barrier: boolean, address?: string): void {
    const up = this.upstream;
    if (!up || !this.upstreamOpen) {
      this.pushLocal(kind, formatReply(REPLIES.upstreamLost, this.enhanced));
      this.enterTakeover(TAKEOVER_REASONS.upstreamLost, 'upstream gone');
      return;
    }
    this.queue.push(address === undefined ? { kind } : { kind, address });
    if (barrier) this.barrier = true;
    up.write(Buffer.concat([line, CRLF]));
    this.armTimer(this.deps.limits.commandTimeout);
  }

  private pushLocal(kind: EntryKind, text: string, closeAfter = false): void {
    if (closeAfter) this.closing = true;
    this.queue.push({ kind, local: text, closeAfter });
    this.flushLocal();
  }

  /** Writes local answers that reached the FIFO head. */
  private flushLocal(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.local === undefined || head.pending) break;
      this.queue.shift();
      this.writeClient(head.local);
      if (head.closeAfter) {
        this.shutdown();
        return;
      }
    }
    if (this.queue.length === 0) {
      this.barrier = false;
      const drained = this.drainWaiters.splice(0);
      for (const w of drained) w();
      if (this.phase === 'command') this.armTimer(this.deps.limits.idleTimeout);
      if (this.upstreamQuitting) this.quitUpstream();
    }
  }

  // ---------------------------------------------------------------- upstream replies

  private onUpstreamData(chunk: Buffer): void {
    this.touch();
    if (this.phase === 'opaque' || this.phase === 'closed') return;
    this.upstreamReader.push(chunk);
    for (let ev = this.upstreamReader.next(); ev; ev = this.upstreamReader.next()) {
      if (ev.kind === 'too-long') {
        this.log.warn({ event: 'UPSTREAM', bytes: ev.bytes }, 'upstream reply line too long');
        this.upstreamFailed(TAKEOVER_REASONS.upstreamProtocol, 'upstream protocol error');
        return;
      }
      const r = this.replyParser.pushLine(ev.line);
      if (!r) continue;
      if (r.kind === 'error') {
        this.log.warn({ event: 'UPSTREAM', problem: r.problem }, 'upstream sent a malformed reply');
        this.upstreamFailed(TAKEOVER_REASONS.upstreamProtocol, 'upstream protocol error');
        return;
      }
      this.onUpstreamReply(r.reply);
      const p = this.now();
      if (p === 'opaque' || p === 'closed' || !this.upstreamOpen) return;
    }
  }

  private onUpstreamReply(reply: ParsedReply): void {
    const head = this.queue[0];
    if (!head || head.local !== undefined) {
      // Unsolicited (e.g. 421 before closing): tell the client if it waits for nothing else, then take over.
      this.log.info({ event: 'UPSTREAM', code: reply.code }, 'unsolicited upstream reply');
      if (this.phase === 'command' && this.queue.length === 0 && reply.code === 421) this.writeClient(reply.raw);
      this.upstreamFailed(TAKEOVER_REASONS.upstreamLost, 'unsolicited upstream reply');
      return;
    }
    if (head.pending) {
      this.log.warn({ event: 'UPSTREAM', code: reply.code }, 'upstream replied during DATA');
      this.upstreamFailed(TAKEOVER_REASONS.upstreamLost, 'upstream reply during DATA');
      return;
    }
    this.queue.shift();
    const ok = reply.code >= 200 && reply.code < 300;
    switch (head.kind) {
      case 'greeting':
        this.greetingSeen = true;
        this.barrier = true; // nothing from the client is handled before the connect verdict
        void this.onGreeting(reply).finally(() => {
          this.barrier = false;
          this.pump();
        });
        return;
      case 'ehlo': {
        const caps = editEhloReply(reply, { removeStarttls: this.opts.starttls === 'forbid' });
        if (ok) this.enhanced = caps.enhancedStatusCodes;
        this.writeClient(caps.raw);
        break;
      }
      case 'mail':
        if (!ok) this.tx = reduceTransaction(this.tx, { stage: 'reset' });
        this.writeClient(reply.raw);
        break;
      case 'rcpt': {
        const address = head.address;
        if (ok && address !== undefined) {
          this.tx = acceptRecipient(reduceTransaction(this.tx, { stage: 'rcpt', address }));
        }
        this.log.info({ event: 'RCPT', to: renderAddress(address ?? ''), code: reply.code }, 'recipient');
        this.writeClient(reply.raw);
        break;
      }
      case 'data':
        if (reply.code === 354) {
          this.writeClient(reply.raw);
          this.startData();
          return;
        }
        this.writeClient(reply.raw);
        break;
      case 'eom':
        this.onEomReply(reply);
        break;
      case 'auth':
      case 'authdata':
        if (reply.code === 334) {
          this.auth.awaitingResponse = true;
          this.writeClient(reply.raw);
          break;
        }
        if (reply.code === 235) {
          this.barrier = true;
          void this.onAuthenticated(reply).finally(() => {
            this.flushLocal();
            this.pump();
          });
          return;
        }
        this.log.info({ event: 'AUTH', mechanism: this.auth.mechanism, code: reply.code }, 'authentication failed');
        this.writeClient(reply.raw);
        break;
      case 'starttls':
        this.writeClient(reply.raw);
        if (reply.code === 220) {
          this.goOpaque();
          return;
        }
        break;
      case 'quit':
        this.writeClient(reply.raw);
        this.closeReason = 'quit';
        this.shutdown();
        return;
      case 'helo':
      case 'rset':
      case 'other':
        this.writeClient(reply.raw);
        break;
    }
    if (reply.code === 421) {
      // RFC 5321 §3.8: 421 means the server is closing the channel, whatever command it answers.
      this.upstreamFailed(TAKEOVER_REASONS.upstreamLost, 'upstream said 421');
      return;
    }
    this.flushLocal();
    this.pump();
  }

  private async onAuthenticated(reply: ParsedReply): Promise<void> {
    const user = this.auth.user ?? 'unknown';
    const mechanism = this.auth.mechanism;
    const event: StageEvent = { stage: 'auth', user, ...(mechanism ? { mechanism } : {}) };
    this.tx = reduceTransaction(this.tx, event);
    this.log.info({ event: 'AUTH', user, mechanism }, 'authenticated');
    const verdict = await this.evaluate('auth', event);
    if (this.phase !== 'command') return;
    if (verdict && isRefusal(verdict)) {
      this.barrier = false;
      this.refuse(verdict, 'auth', true);
      return;
    }
    this.writeClient(reply.raw);
    this.barrier = false;
  }

  private onUpstreamClose(socket: Socket): void {
    if (socket !== this.upstream) return;
    const wasOpen = this.upstreamOpen;
    this.upstreamOpen = false;
    if (this.phase === 'closed') return;
    if (this.phase === 'opaque') {
      this.closeReason = 'upstream';
      this.shutdown();
      return;
    }
    if (!wasOpen && this.outstandingUpstream() === 0) return;
    this.upstreamFailed(TAKEOVER_REASONS.upstreamLost, 'upstream closed');
  }

  /** The upstream is gone or broken: every command it still owed an answer gets 451, then takeover. */
  private upstreamFailed(reason: SmtpReply, why: string): void {
    if (this.phase === 'closed') return;
    this.log.info({ event: 'UPSTREAM', why }, 'upstream failed');
    const up = this.upstream;
    this.upstreamOpen = false;
    up?.destroy();
    if (this.phase === 'connecting') {
      // Lost before the greeting: greet ourselves and take over (once the greeting is being judged, onGreeting goes on).
      if (this.greetingSeen) return;
      this.queue.length = 0;
      void this.greetOurselves(reason, why);
      return;
    }
    if (this.phase === 'data') {
      // Keep reading until the client's end of data; answer then. (A wait for the upstream's drain never ends now.)
      this.dataProblem ??= 'upstream';
      this.abortScan();
      this.releaseData('upstream');
      return;
    }
    for (const e of this.queue) {
      if (e.local !== undefined) continue;
      e.local = e.kind === 'quit' ? formatReply(TAKEOVER_REPLIES.signOff, this.enhanced) : formatReply(REPLIES.upstreamLost, this.enhanced);
      if (e.kind === 'quit') e.closeAfter = true;
      e.pending = false;
    }
    if (this.phase === 'command') this.enterTakeover(reason, why);
    this.flushLocal();
    this.pump();
  }

  // ---------------------------------------------------------------- DATA

  private startData(): void {
    const { deps } = this;
    this.phase = 'data';
    this.barrier = true;
    this.framer = new DataFramer(this.opts.bareLineEndings);
    this.dataProblem = undefined;
    this.contentVerdicts = [];
    this.messages++;
    const needs = deps.policy.needs;
    if (this.skipRules === 'none' && (needs.headers || needs.stages.has('header') || needs.stages.has('eoh'))) this.headers = new HeaderCollector(this.opts.headerCap);
    if (deps.scanners.enabled) {
      const s = this.tx.session;
      this.scanJob = deps.scanners.start({
        sessionId: s.id,
        client: s.client,
        recipients: this.tx.envelope.rcpts,
        ...(s.helo !== undefined ? { helo: s.helo } : {}),
        ...(this.tx.envelope.mailFrom !== undefined ? { sender: this.tx.envelope.mailFrom } : {}),
        ...(s.destination ? { destination: s.destination } : {}),
      });
    }
    this.leadMutations = [...this.sessionHeaders, ...this.messageHeaders];
    const { text, skipped } = renderLeadingHeaders(this.leadMutations);
    const holdLimit = this.opts.holdMessagesUpTo ?? 0;
    if (holdLimit > 0 && this.opts.holdDir) {
      this.held = new HeldMessage({ limit: holdLimit, dir: this.opts.holdDir, ...(this.opts.holdMemory ? { memory: this.opts.holdMemory } : {}) });
      this.streamed = false;
      // The upstream hears nothing while we hold: at most dataTimeout, then what is held goes out and the rest streams.
      this.holdTimer = setTimeout(() => this.fallBackToStreaming('hold time'), deps.limits.dataTimeout);
      this.holdTimer.unref?.();
    } else {
      this.streamed = true;
      if (skipped.length > 0) this.log.debug({ skipped: skipped.length }, 'header mutations the interceptor cannot apply while streaming');
    }
    // Written together with the first message bytes (one write instead of two).
    this.pendingHead = text ? Buffer.from(text, 'utf8') : undefined;
    this.log.info({ event: 'DATA', from: renderAddress(this.tx.envelope.mailFrom ?? ''), rcpts: this.tx.envelope.rcpts.length }, 'data');
    this.armTimer(deps.limits.dataTimeout);
    const rest = this.clientReader.takeRest();
    if (rest.length > 0) this.onDataChunk(rest);
  }

  private onDataChunk(chunk: Buffer): void {
    const framer = this.framer;
    if (!framer) return;
    if (framer.done) {
      // Bytes after the end of data while the eom verdict is pending: they are the next commands.
      this.dataRest = this.dataRest ? Buffer.concat([this.dataRest, chunk]) : chunk;
      if (this.dataRest.length > READ_AHEAD) this.client.pause();
      return;
    }
    const out = framer.push(chunk);
    const limit = this.deps.limits.messageSize;
    if (!this.dataProblem && limit > 0 && framer.contentBytes > limit) {
      this.dataProblem = 'size';
      this.log.info({ event: 'SIZE', limit }, 'message over the size limit: upstream dropped');
      this.dropUpstreamInData();
    }
    if (!this.dataProblem && framer.stopped) {
      this.dataProblem = 'bare';
      this.log.info({ event: 'SMUGGLING', first: framer.firstBare }, 'bare CR or LF in DATA: upstream dropped');
      this.dropUpstreamInData();
    }
    if (!this.dataProblem && this.held) {
      let n = 0;
      for (const c of out.content) n += c.length;
      if (this.held.wouldOverflow(n)) this.fallBackToStreaming('size');
    }
    if (!this.dataProblem && this.held) {
      // Hold mode: nothing goes upstream before the verdict; the content is kept (and scanned, headers collected).
      for (const c of out.content) this.held.write(c);
    } else if (!this.dataProblem && this.flushing) {
      // Falling back: the held part is being written upstream; these bytes follow it.
      for (const b of out.forward) this.flushQueue.push(b);
    } else if (!this.dataProblem) {
      const up = this.upstream;
      let full = false;
      // At the end of data the last bytes wait (corked) for the held dot, so they go out in one write with it.
      if (out.end && up) up.cork();
      if (this.pendingHead && (out.forward.length > 0 || out.end)) {
        out.forward.unshift(this.pendingHead);
        this.pendingHead = undefined;
      }
      for (const b of out.forward) if (up && !up.write(b)) full = true;
      if (!full) this.releaseReadAhead();
      else if (up && !this.mayReadAhead(up) && !this.dataHolds.has('upstream')) {
        this.holdData('upstream');
        up.once('drain', () => {
          this.releaseReadAhead();
          this.releaseData('upstream');
        });
      }
    }
    if (!this.dataProblem) {
      for (const c of out.content) {
        this.scanJob?.write(c);
        if (this.headers && !this.headers.done) {
          const block = this.headers.push(c);
          if (block) this.onHeaderBlock(block.headers, block.truncated);
        }
      }
      const job = this.scanJob;
      if (job && job.backlog > SCAN_BACKLOG_LIMIT && !this.dataHolds.has('scanner')) {
        this.holdData('scanner');
        void job.drained().then(() => this.releaseData('scanner'));
      }
    }
    if (out.end) {
      this.dataRest = out.rest;
      this.client.pause();
      void this.endOfData().catch((err: unknown) => {
        this.log.error({ error: errText(err) }, 'internal error at end of data');
        this.fail();
      });
    }
  }

  private onHeaderBlock(headers: ReadonlyArray<readonly [string, string]>, truncated: boolean): void {
    if (truncated) this.log.info({ event: 'HEADERS', truncated }, 'header block over the cap: rules see the first part');
    const perHeader = this.deps.policy.needs.stages.has('header');
    for (const [name, value] of headers) {
      const event: StageEvent = { stage: 'header', name, value };
      this.tx = reduceTransaction(this.tx, event);
      // evaluate() reads this.tx synchronously, so each header rule sees the headers up to this one.
      if (perHeader) this.contentVerdicts.push(this.evaluate('header', event));
    }
    this.tx = reduceTransaction(this.tx, { stage: 'eoh' });
    this.contentVerdicts.push(this.evaluate('eoh', { stage: 'eoh' }));
  }

  private dropUpstreamInData(): void {
    this.pendingHead = undefined;
    this.upstreamOpen = false;
    this.upstream?.destroy();
    this.abortScan();
    this.dropHeld();
    // Nothing more goes upstream: read the rest of the message (to its end of data) without waiting for a drain.
    this.releaseData('upstream');
  }

  private dropHeld(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    // abort() after end() removes the filter's rewritten file.
    this.rewritten?.job.abort();
    this.rewritten = undefined;
    const held = this.held;
    this.held = undefined;
    if (held) void held.dispose();
  }

  /**
   * The held message outgrew the hold limit (or was held for dataTimeout): write what is held upstream (trace
   * header first), then stream the rest as usual. The client is paused until the held part is out.
   */
  private fallBackToStreaming(why: 'size' | 'hold time'): void {
    const held = this.held;
    // (The framer may be done already: the chunk that outgrew the limit can hold the end of data too; endOfData
    // waits for the flush. The hold timer is cleared by endOfData before it could fire after the end.)
    if (!held || this.phase !== 'data' || this.dataProblem || !this.framer) return;
    this.held = undefined;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.streamed = true;
    this.log.info({ event: 'HOLD', why, held: held.size, limit: this.opts.holdMessagesUpTo }, 'message not held any longer: streaming from here (eom header edits and quarantine not applicable)');
    this.client.pause();
    this.flushQueue = [];
    const head = this.pendingHead;
    this.pendingHead = undefined;
    this.flushing = (async () => {
      try {
        await held.finish();
        const stuffer = new DotStuffState();
        if (head) await this.writeUpstream(head);
        for await (const c of held.raw()) {
          if (!(await this.writeUpstream(stuffer.stuff(c as Buffer)))) return;
        }
        // Bytes that came meanwhile; more may be queued while we wait for a drain.
        while (this.flushQueue.length > 0) {
          if (!(await this.writeUpstream(this.flushQueue.shift()!))) return;
        }
      } catch (err) {
        this.log.warn({ event: 'HOLD', error: errText(err) }, 'writing the held part upstream failed');
        this.dataProblem ??= 'upstream';
        this.dropUpstreamInData();
      } finally {
        await held.dispose();
      }
    })().finally(() => {
      this.flushing = undefined;
      this.flushQueue = [];
      if (this.phase === 'data' && this.framer && !this.framer.done && this.dataHolds.size === 0) this.client.resume();
    });
  }

  /** Writes to the upstream, waiting for a drain when its buffer is full; false once the upstream is gone. */
  private async writeUpstream(data: Buffer): Promise<boolean> {
    const up = this.upstream;
    if (!up || !this.upstreamOpen || this.phase === 'closed') return false;
    if (data.length > 0 && !up.write(data)) await waitForRoom(up);
    return this.upstreamOpen && this.now() !== 'closed';
  }

  /** Sends the held message upstream with the mutations applied (trace header first); false if the upstream went away. */
  private async sendHeld(held: HeldMessage, mutations: HeaderMutation[]): Promise<boolean> {
    const { text, skipped } = renderLeadingHeaders(this.leadMutations);
    const stuffer = new DotStuffState();
    // Written in batches of up to 64 KiB (a small message, dot included, in one write).
    let batch: Buffer[] = [];
    let batched = 0;
    for await (const c of held.edited(text, [...skipped, ...mutations], this.rewritten?.path)) {
      const b = stuffer.stuff(c as Buffer);
      batch.push(b);
      batched += b.length;
      if (batched >= SEND_BATCH) {
        if (!(await this.writeUpstream(Buffer.concat(batch, batched)))) return false;
        batch = [];
        batched = 0;
      }
    }
    if (held.headerSkipped) this.log.info({ event: 'HOLD' }, 'header block too large to edit: sent unchanged');
    batch.push(stuffer.lineStart ? DOT_CRLF : CRLF_DOT_CRLF);
    return this.writeUpstream(Buffer.concat(batch));
  }

  /** Stores the held message (mutations applied) in the quarantine; the id, or undefined if that failed. */
  private async quarantineHeld(held: HeldMessage, v: Verdict, mutations: HeaderMutation[]): Promise<string | undefined> {
    const sink = this.deps.quarantine!;
    const { text, skipped } = renderLeadingHeaders(this.leadMutations);
    try {
      const entry = await sink.add(
        quarantineMetaFromTransaction(this.tx, v.reason ?? 'quarantined by policy', v.hits[v.hits.length - 1]?.rule),
        held.edited(text, [...skipped, ...mutations], this.rewritten?.path),
      );
      return entry.id;
    } catch (err) {
      this.log.error({ event: 'QUARANTINE', error: errText(err) }, 'storing the message in the quarantine failed: deferred');
      return undefined;
    }
  }

  private abortScan(): void {
    this.scanJob?.abort();
    this.scanJob = undefined;
    this.releaseReadAhead();
    this.releaseData('scanner');
  }

  /** Stops reading the client until `why` clears (the bytes read so far wait for a slower consumer). */
  private holdData(why: 'upstream' | 'scanner'): void {
    this.dataHolds.add(why);
    this.client.pause();
  }

  /** `why` cleared: reading resumes once nothing else holds it and the message is still coming in. */
  private releaseData(why: 'upstream' | 'scanner'): void {
    if (!this.dataHolds.delete(why) || this.dataHolds.size > 0) return;
    if (this.phase === 'data' && this.framer && !this.framer.done && !this.flushing) this.client.resume();
  }

  /**
   * The upstream's buffer is over its mark: while scanners take the message, keep reading the client as long as
   * what waits for the upstream fits in this session's share of the read-ahead budget.
   */
  private mayReadAhead(up: Socket): boolean {
    const budget = this.opts.readAhead;
    if (!budget || !this.scanJob) return false;
    const wanted = up.writableLength;
    this.readAheadClaim = budget.move(this.readAheadClaim, wanted);
    return this.readAheadClaim === wanted;
  }

  private releaseReadAhead(): void {
    if (this.readAheadClaim > 0) this.readAheadClaim = this.opts.readAhead?.release(this.readAheadClaim) ?? 0;
  }

  /** The client sent CRLF.CRLF: decide, then send the held "." or drop the upstream. */
  private async endOfData(): Promise<void> {
    const framer = this.framer!;
    // The rest of the message is in the upstream's buffer or on its way; read-ahead is over for this message, and
    // so are its holds (the client stays paused until the verdict anyway).
    this.releaseReadAhead();
    this.dataHolds.clear();
    const size = framer.contentBytes;
    const entry: Entry = { kind: 'eom', pending: true };
    this.queue.push(entry);
    if (this.headers && !this.headers.done) {
      const block = this.headers.finish();
      if (block) this.onHeaderBlock(block.headers, block.truncated);
    }
    this.headers = undefined;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (this.flushing) await this.flushing;
    const held = this.held;
    let holdFailed = false;
    if (held && !this.dataProblem) {
      try {
        await held.finish();
      } catch (err) {
        this.log.error({ event: 'HOLD', error: errText(err) }, 'holding the message failed');
        holdFailed = true;
      }
    }
    /** Header mutations of the header, eoh and eom verdicts (applied in hold mode). */
    const mutations: HeaderMutation[] = [];
    let refusal: SmtpReply | undefined;
    let discard = false;
    let quarantined: string | undefined;
    let why = '';
    if (holdFailed) [refusal, why] = [REPLIES.holdFailed, 'hold failed'];
    else if (this.dataProblem === 'size') [refusal, why] = [REPLIES.tooBig, 'size'];
    else if (this.dataProblem === 'bare') [refusal, why] = [REPLIES.bareLineEnding, 'bare line ending'];
    else if (this.dataProblem === 'upstream') [refusal, why] = [REPLIES.upstreamLost, 'upstream lost'];
    if (!refusal) {
      for (const v of await Promise.all(this.contentVerdicts)) {
        if (v && isRefusal(v) && !refusal) [refusal, why] = [this.refusalReply(v, 550), `policy (${ruleNames(v).join(',')})`];
        if (v) mutations.push(...v.mutations);
      }
      this.contentVerdicts = [];
    }
    if (!refusal && this.scanJob) {
      const job = this.scanJob;
      const outcome = await job.end(); // shutdown() may still abort it while it runs (client gone)
      this.scanJob = undefined;
      this.tx = reduceTransaction(this.tx, { stage: 'scan', results: outcome.results });
      if (outcome.rewritten && this.held) {
        // Hold mode: nothing is upstream yet, so the filter's rewritten message is what goes on (or to quarantine).
        this.rewritten = { path: outcome.rewritten.path, job };
        this.log.info({ event: 'SCAN', size: outcome.rewritten.size }, 'filter rewrote the message: sending the rewritten message');
      } else if (outcome.rewritten) {
        job.abort();
        this.log.info({ event: 'SCAN' }, 'filter rewrote the message; the interceptor streams and cannot apply it');
      }
    }
    this.tx = reduceTransaction(this.tx, { stage: 'eom', size });
    if (!refusal && this.upstreamOpen) {
      const locked = await this.lockedEntry();
      if (locked) [refusal, why] = [REPLIES.locked, `locked (${locked})`];
    }
    if (!refusal && this.upstreamOpen) {
      const v = await this.evaluate('eom', { stage: 'eom', size });
      if (v) mutations.push(...v.mutations);
      if (v && isRefusal(v)) [refusal, why] = [this.refusalReply(v, 550), `policy (${ruleNames(v).join(',')})`];
      else if (v?.action === 'discard') [discard, why] = [true, `discard (${ruleNames(v).join(',')})`];
      else if (v?.action === 'quarantine' && this.held && this.deps.quarantine) {
        // Hold mode: the one copy goes to the quarantine; the upstream never gets the message.
        const id = await this.quarantineHeld(this.held, v, mutations);
        if (id === undefined) [refusal, why] = [REPLIES.quarantineFailed, 'quarantine failed'];
        else [quarantined, why] = [id, `quarantine (${ruleNames(v).join(',')})`];
      } else if (v?.action === 'quarantine') {
        // Streaming (no hold mode, or the message outgrew it) or no quarantine store: refuse rather than lose it silently.
        this.log.warn({ event: 'QUARANTINE', rules: ruleNames(v), reason: v.reason, held: this.held !== undefined }, 'quarantine needs hold mode and a quarantine store: message refused');
        [refusal, why] = [v.reply && v.reply.code >= 500 ? v.reply : REPLIES.quarantineRefused, `quarantine (${ruleNames(v).join(',')})`];
      }
    }
    if (this.phase === 'closed') return;
    if (!refusal && !discard && !quarantined && !this.upstreamOpen) [refusal, why] = [REPLIES.upstreamLost, 'upstream lost'];
    if (!refusal && !discard && !quarantined && this.held) {
      // Hold mode: the message goes upstream now, edited, then the dot (phase stays 'data' meanwhile).
      if (!(await this.sendHeld(this.held, mutations))) [refusal, why] = [REPLIES.upstreamLost, 'upstream lost'];
      if (this.now() === 'closed') return;
      this.dropHeld();
    } else if (!refusal && !discard && !quarantined && mutations.length > 0 && this.streamed) {
      this.log.debug({ mutations: mutations.length }, 'header mutations after the data stage are not applicable while streaming');
    }
    this.phase = 'command';
    this.framer = undefined;
    if (quarantined) {
      this.log.info({ event: 'EOM', size, quarantined, from: renderAddress(this.tx.envelope.mailFrom ?? ''), rcpts: this.tx.envelope.rcpts.length, rules: this.messageRules }, 'message quarantined: upstream dropped before the final dot');
      this.dropUpstreamInData();
      entry.local = formatReply(REPLIES.quarantined, this.enhanced);
      entry.pending = false;
      this.finishTx();
      this.enterTakeover(TAKEOVER_REASONS.messageAborted, why);
    } else if (refusal || discard) {
      this.log.info({ event: 'EOM', size, refused: why, from: renderAddress(this.tx.envelope.mailFrom ?? ''), rcpts: this.tx.envelope.rcpts.length, rules: this.messageRules }, discard ? 'message discarded: upstream dropped before the final dot' : 'message refused: upstream dropped before the final dot');
      this.dropUpstreamInData();
      entry.local = formatReply(discard ? REPLIES.discarded : refusal!, this.enhanced);
      entry.pending = false;
      this.finishTx();
      this.enterTakeover(TAKEOVER_REASONS.messageAborted, why);
    } else if (!this.streamed) {
      // Hold mode: the message and its dot are out (sendHeld).
      entry.pending = false;
      this.armTimer(this.deps.limits.commandTimeout);
    } else {
      entry.pending = false;
      const up = this.upstream!;
      up.write(DOT_CRLF);
      while (up.writableCorked > 0) up.uncork();
      this.armTimer(this.deps.limits.commandTimeout);
    }
    const rest = this.dataRest;
    this.dataRest = undefined;
    if (rest && rest.length > 0) this.clientReader.push(rest);
    this.client.resume();
    this.flushLocal();
    this.pump();
  }

  private onEomReply(reply: ParsedReply): void {
    this.log.info({ event: 'EOM', code: reply.code, size: this.tx.message.size, from: renderAddress(this.tx.envelope.mailFrom ?? ''), rcpts: this.tx.envelope.rcpts.length, rules: this.messageRules }, reply.code === 250 ? 'message relayed' : 'upstream refused the message');
    this.writeClient(reply.raw);
    this.finishTx();
  }

  private finishTx(): void {
    this.tx = finishMessage(this.tx);
    this.resetMessage();
  }

  private resetMessage(): void {
    this.messageHeaders = [];
    this.messageRules = [];
    if (this.skipRules === 'message') this.skipRules = 'none';
  }

  // ---------------------------------------------------------------- STARTTLS: opaque relay

  private goOpaque(): void {
    const up = this.upstream;
    if (!up) return this.shutdown();
    this.phase = 'opaque';
    this.log.info({ event: 'STARTTLS' }, 'STARTTLS accepted by the upstream: the session is an opaque relay from here on');
    this.tx = reduceTransaction(this.tx, { stage: 'tls', active: true });
    const rest = this.clientReader.takeRest();
    if (rest.length) up.write(rest);
    const rest2 = this.upstreamReader.takeRest();
    if (rest2.length) this.writeClient(rest2);
    relayOpaque(this.client, up, {
      activity: () => this.touch(),
      fromClient: (n) => (this.bytesIn += n),
      fromUpstream: (n) => (this.bytesOut += n),
    });
    this.armTimer(this.deps.limits.idleTimeout);
  }

  // ---------------------------------------------------------------- refusals and takeover

  /** A refusal that ends the relay: the rule's reply (in order), then takeover. */
  private refuse(verdict: Verdict, stage: RuleStage, quitUpstream: boolean): void {
    const reply = this.refusalReply(verdict, 550);
    this.log.info({ event: 'REFUSED', stage, verdict: verdict.action, code: reply.code, rules: ruleNames(verdict) }, 'refused by policy: taking the session over');
    // 421 closes the channel whatever command it answers (RFC 5321 §3.8): written, then the session ends.
    if (reply.code === 421) this.closeReason = 'refused-421';
    this.pushLocal(stage === 'rcpt' ? 'rcpt' : 'other', formatReply(reply, this.enhanced), reply.code === 421);
    if (quitUpstream) this.enterTakeover(TAKEOVER_REASONS.policy, `${stage} ${verdict.action}`);
  }

  /** A rule answered 421 at connect: the client is told and the connection closed (RFC 5321 §3.8), no takeover. */
  private closeAfter421(): void {
    this.log.info({ event: 'REFUSED', stage: 'connect', code: 421 }, 'refused with 421: closing');
    this.closeReason = 'refused-421';
    this.shutdown();
  }

  private enterTakeover(reason: SmtpReply, why: string): void {
    if (this.phase === 'closed' || this.phase === 'takeover') return;
    this.phase = 'takeover';
    this.takeoverReason = reason;
    this.takeover = new TakeoverResponder(this.deps.hostname, reason, this.deps.limits.takeoverCommands);
    this.log.info({ event: 'TAKEOVER', reason: why }, 'session taken over');
    this.upstreamQuitting = true;
    if (this.outstandingUpstream() === 0) this.quitUpstream();
    this.clearTimer();
    this.takeoverDeadline = setTimeout(() => {
      this.writeClient(formatReply({ ...TAKEOVER_REPLIES.timeout, lines: [`${this.deps.hostname} ${TAKEOVER_REPLIES.timeout.lines[0]}`] }, this.enhanced));
      this.closeReason = 'takeover-timeout';
      this.shutdown();
    }, this.deps.limits.takeoverTimeout);
    this.takeoverDeadline.unref?.();
  }

  private outstandingUpstream(): number {
    let n = 0;
    for (const e of this.queue) if (e.local === undefined && !e.pending) n++;
    return n;
  }

  /** Closes the upstream politely once it owes no replies: QUIT, then end. */
  private quitUpstream(): void {
    this.upstreamQuitting = false;
    const up = this.upstream;
    if (!up || !this.upstreamOpen) return;
    if (this.outstandingUpstream() > 0) {
      this.upstreamQuitting = true;
      return;
    }
    this.upstreamOpen = false;
    this.upstreamEnded = true;
    up.end('QUIT\r\n');
    const t = setTimeout(() => up.destroy(), 2000);
    t.unref?.();
    up.once('close', () => clearTimeout(t));
  }

  private onTakeoverLine(ev: LineEvent): undefined {
    const cmd = ev.kind === 'too-long' ? 'too-long' : this.auth.awaitingResponse ? parseCommand('NOOP') : parseCommand(ev.line);
    this.auth.awaitingResponse = false;
    const answer = this.takeover!.answer(cmd, this.enhanced);
    if (answer.enablesEnhanced) this.enhanced = true;
    if (answer.close) this.closeReason = 'taken';
    this.pushLocal('other', answer.text, answer.close);
    return undefined;
  }

  // ---------------------------------------------------------------- policy

  private async evaluate(stage: RuleStage, _event: StageEvent): Promise<Verdict | undefined> {
    const { policy } = this.deps;
    if (this.skipRules !== 'none' && stage !== 'connect') return undefined;
    if (!policy.needs.stages.has(stage)) return undefined;
    let verdict: Verdict;
    try {
      verdict = await policy.evaluate(stage, this.tx);
    } catch (err) {
      this.log.error({ stage, error: errText(err) }, 'policy evaluation failed: tempfail');
      verdict = { action: 'tempfail', reply: GENERIC_TEMPFAIL, mutations: [], effects: [], hits: [] };
    }
    for (const hit of verdict.hits) if (this.messageRules.length < 64) this.messageRules.push(hit.rule);
    if (verdict.hits.length > 0 || verdict.action !== 'continue') {
      this.log.info({ event: 'VERDICT', stage, action: verdict.action, rules: ruleNames(verdict), code: verdict.reply?.code }, 'policy verdict');
    }
    if (verdict.effects.length > 0) this.deps.effects.run(verdict.effects, this.tx);
    return verdict;
  }

  private refusalReply(v: Verdict, defaultCode: number): SmtpReply {
    if (v.reply && v.reply.code >= 400) return v.reply;
    if (v.action === 'tempfail') return REPLIES.tempfailed;
    return defaultCode === 554 ? { code: 554, enhanced: '5.7.1', lines: [`${this.deps.hostname} Access denied`] } : REPLIES.rejected;
  }

  private collectHeaders(v: Verdict | undefined, scope: 'session' | 'message'): void {
    if (!v || v.mutations.length === 0) return;
    (scope === 'session' ? this.sessionHeaders : this.messageHeaders).push(...v.mutations);
  }

  private async lockedEntry(): Promise<string | undefined> {
    const keys = [lockKey('client', this.opts.client.ip)];
    const user = this.tx.session.auth?.user;
    if (user) keys.push(lockKey('auth', user));
    const now = this.deps.locks.isLockedNow;
    try {
      for (const key of keys) {
        const e = now !== undefined ? now(key) : await this.deps.locks.isLocked(key);
        if (e) return key;
      }
    } catch (err) {
      this.log.warn({ error: errText(err) }, 'lock store check failed: continuing');
    }
    return undefined;
  }

  // ---------------------------------------------------------------- timers, output, shutdown

  private armTimer(ms: number): void {
    if (this.phase === 'takeover' || this.phase === 'closed') return;
    if (this.timer && this.timerMs === ms) {
      this.timer.refresh();
      return;
    }
    this.clearTimer();
    this.timerMs = ms;
    this.timer = setTimeout(() => this.onTimeout(), ms);
  }

  private touch(): void {
    this.timer?.refresh();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimeout(): void {
    const phase = this.phase;
    this.log.info({ event: 'TIMEOUT', phase, waitingForUpstream: this.outstandingUpstream() > 0 }, 'session timed out');
    if (phase === 'connecting' && !this.greetingRelayed && this.upstream) {
      this.upstreamFailed(TAKEOVER_REASONS.upstreamTimeout, 'greeting timeout');
      return;
    }
    if (phase === 'command' && this.outstandingUpstream() > 0) {
      this.upstreamFailed(TAKEOVER_REASONS.upstreamTimeout, 'upstream reply timeout');
      return;
    }
    this.closeReason = 'timeout';
    if (phase !== 'opaque') this.writeClient(formatReply({ code: 421, enhanced: '4.4.2', lines: [`${this.deps.hostname} Timeout, closing connection`] }, this.enhanced));
    this.shutdown();
  }

  private writeClient(data: string | Buffer): void {
    if (this.phase === 'closed' || this.client.destroyed) return;
    this.bytesOut += data.length;
    this.client.write(data);
  }

  private fail(): void {
    this.writeClient(formatReply(GENERIC_TEMPFAIL, this.enhanced));
    this.closeReason = 'internal-error';
    this.shutdown();
  }

  private onClientClose(): void {
    if (this.phase === 'closed') return;
    if (this.phase === 'data') this.log.info({ event: 'ABORT' }, 'client gone during DATA: upstream dropped, nothing delivered');
    if (this.closeReason === 'client' && this.phase === 'data') this.closeReason = 'client-in-data';
    this.shutdown();
  }

  /** Closes everything exactly once and writes the CLOSE line. */
  private shutdown(): void {
    if (this.phase === 'closed') return;
    const wasData = this.phase === 'data' || this.framer !== undefined;
    const wasOpaque = this.phase === 'opaque';
    this.phase = 'closed';
    for (const w of this.drainWaiters.splice(0)) w();
    this.clearTimer();
    if (this.takeoverDeadline) clearTimeout(this.takeoverDeadline);
    this.abortScan();
    this.dropHeld();
    const up = this.upstream;
    if (up && !up.destroyed && !this.upstreamEnded) {
      if (this.upstreamOpen && !wasData && !this.closeReason.startsWith('internal')) {
        this.upstreamOpen = false;
        if (this.closeReason === 'quit') {
          // The upstream has answered QUIT: it owes nothing more and closes its side now; so do we, without
          // waiting for its FIN (one shutdown, read and poll change less per session).
          up.destroy();
        } else {
          // After STARTTLS the bytes are TLS: a plaintext QUIT would be garbage there.
          if (wasOpaque) up.end();
          else up.end('QUIT\r\n');
          const t = setTimeout(() => up.destroy(), 2000);
          t.unref?.();
          up.once('close', () => clearTimeout(t));
        }
      } else {
        up.destroy();
      }
    }
    this.upstreamOpen = false;
    // After the client's QUIT has its 221, the socket is closed as soon as the reply is flushed, as an MTA does
    // (RFC 5321 §4.1.1.10): waiting for the client's FIN costs a read and a poll change per session, and clients
    // that close without reading the 221 (smtp-source does) turn that read into a reset and an error object.
    // Any other ending half-closes and waits for the client, bounded.
    if (this.closeReason === 'quit') this.client.destroySoon();
    else {
      this.client.end();
      // Read on (discarding: the phase is closed) so the client's FIN ends the session at once. The client may be
      // paused here (read-ahead full, replies unread); a paused socket never sees the FIN, and the session would
      // hold its slot until the timer below.
      this.client.resume();
    }
    const t = setTimeout(() => this.client.destroy(), 2000);
    t.unref?.();
    const done = (): void => {
      clearTimeout(t);
      this.log.info(
        { event: 'CLOSE', by: this.closeReason, bytesIn: this.bytesIn, bytesOut: this.bytesOut, durationMs: Date.now() - this.startedAt, transactions: this.messages, auth: this.tx.session.auth?.user },
        'session end',
      );
      this.resolveClosed();
    };
    if (this.client.destroyed) done();
    else this.client.once('close', done);
  }
}

const CRLF = Buffer.from('\r\n');
const DOT_CRLF = Buffer.from('.\r\n');
const CRLF_DOT_CRLF = Buffer.from('\r\n.\r\n');
/** Hold mode: bytes gathered before one write upstream. */
const SEND_BATCH = 64 * 1024;

function isAuthLine(line: Buffer): boolean {
  return line.length > 5 && (line[0]! | 0x20) === 0x61 && (line[1]! | 0x20) === 0x75 && (line[2]! | 0x20) === 0x74 && (line[3]! | 0x20) === 0x68 && line[4] === 0x20;
}

function isRefusal(v: Verdict): boolean {
  return v.action === 'reject' || v.action === 'tempfail';
}

function ruleNames(v: Verdict): string[] {
  return v.hits.map((h) => h.rule);
}

function fmt(e: Endpoint): string {
  return e.ip.includes(':') ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
