/**
 * One milter connection (one SMTP session on the MTA side, many messages): negotiates options, turns milter
 * commands into stage events on a Transaction, asks the policy for verdicts and renders them as SMFIR packets.
 * Exactly one reply per replied-to command; none to MACRO, ABORT, QUIT, QUIT_NC or negotiated NR_* events.
 * Edits only at end of message. Any failure closes this connection only. protocols.md §1.
 */
import type { Socket } from 'node:net';
import { ProtocolError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RuleStage, StageEvent } from '../core/stage.js';
import { acceptRecipient, finishMessage, reduceTransaction, startTransaction, type Transaction } from '../core/transaction.js';
import { CONTINUE, type HeaderMutation, type RuleHit, type Verdict } from '../core/verdict.js';
import type { DoorDeps } from '../daemon/door.js';
import { SCAN_BACKLOG_LIMIT, type ScanJob } from '../scanners/scanner.js';
import { decodeCommand, encodeReply, PacketReader, SIMPLE_PACKETS, type MilterCommand, type MilterPacket } from './milter-codec.js';
import { Action, Cmd, Proto } from './milter-constants.js';
import { negotiate, type Negotiated } from './milter-negotiate.js';
import { renderReplyCode } from './milter-reply.js';

export interface MilterSessionOptions {
  readonly id: string;
  readonly deps: DoorDeps;
  /** Largest packet length accepted from the MTA. */
  readonly maxPacket: number;
  /** Close the connection when the MTA sends nothing for this long. */
  readonly readTimeoutMs: number;
  /** Send SMFIR_PROGRESS this often while a replied-to command waits on slow work. */
  readonly progressIntervalMs: number;
  /** Also negotiate SMFIP_NR_* for CONNECT/HELO/MAIL/RCPT without rules (default false; see milter-negotiate.ts). */
  readonly noReply?: boolean;
  /** Judge CONNECT/HELO/MAIL on arrival, answer their verdicts at RCPT (default false). */
  readonly delayReject?: boolean;
  /**
   * What the MTA writes unanswered never waits on our delayed ACK (a unix-domain socket, or TCP with `ackNow`):
   * NODATA may be asked for (milter-negotiate.ts).
   */
  readonly promptAcks?: boolean;
  /** TCP: sends the ACK for what has been read, now (prompt-ack.ts); called after each read that got no answer. */
  readonly ackNow?: () => void;
}

/** Order of macro stages: a command of one stage clears the macros of every later stage (libmilter). */
const MACRO_ORDER = ['C', 'H', 'M', 'R', 'T', 'L', 'N', 'B', 'E'] as const;

/** OPTNEG answers already computed, per loaded ruleset (its needs) and offer + door options. */
const NEGOTIATED = new WeakMap<object, Map<string, { readonly neg: Negotiated; readonly packet: Buffer }>>();

/** Command byte → its type, for the commands that may be answered (MACRO, ABORT, QUIT and QUIT_NC never are). */
const ANSWERABLE: ReadonlyMap<number, MilterCommand['type']> = new Map([
  [Cmd.OPTNEG, 'optneg'],
  [Cmd.CONNECT, 'connect'],
  [Cmd.HELO, 'helo'],
  [Cmd.MAIL, 'mail'],
  [Cmd.RCPT, 'rcpt'],
  [Cmd.DATA, 'data'],
  [Cmd.HEADER, 'header'],
  [Cmd.EOH, 'eoh'],
  [Cmd.BODY, 'body'],
  [Cmd.BODYEOB, 'eob'],
  [Cmd.UNKNOWN, 'unknown'],
]);

/** The NR_* bit that means "no reply" for each replied-to command. */
const NO_REPLY_BIT: Partial<Record<MilterCommand['type'], number>> = {
  connect: Proto.NR_CONN,
  helo: Proto.NR_HELO,
  mail: Proto.NR_MAIL,
  rcpt: Proto.NR_RCPT,
  data: Proto.NR_DATA,
  header: Proto.NR_HDR,
  eoh: Proto.NR_EOH,
  body: Proto.NR_BODY,
  unknown: Proto.NR_UNKN,
};

interface MessageState {
  scan?: ScanJob;
  /** The blank line between headers and body was written to the scan job. */
  headersClosed: boolean;
  /** Header and body bytes seen (as reconstructed, CRLF line ends). */
  bytes: number;
  /** A terminal verdict was given for this message; later events get no rule evaluation. */
  decided?: 'accept' | 'reject' | 'tempfail' | 'discard';
  /** The refusal sent when the message was rejected before its end (repeated if the MTA still sends EOM). */
  refusal?: Buffer;
  /** A MAIL verdict decided without a reply (delayReject): sent at the next RCPT or DATA instead. */
  delayed?: Buffer;
  quarantine?: string;
  mutations: HeaderMutation[];
  hits: RuleHit[];
  /** We told the MTA to skip the rest of the body. */
  skipping: boolean;
  /** DATA's stage ran for this message (on SMFIC_DATA, or with NODATA at the first event after it). */
  dataSeen: boolean;
  /** Scan results were cut short (the message outgrew the limit). */
  truncated: boolean;
}

function newMessage(): MessageState {
  return { headersClosed: false, bytes: 0, mutations: [], hits: [], skipping: false, truncated: false, dataSeen: false };
}

const CRLF = Buffer.from('\r\n');
const HEADER_NAME = /^[!-9;-~]{1,998}$/;

/** "<a@b>" → "a@b", "<>" → "" (smtpd_milters send the address as typed; non_smtpd_milters without brackets). */
export function stripBrackets(addr: string): string {
  const t = addr.trim();
  return t.startsWith('<') && t.endsWith('>') ? t.slice(1, -1) : t;
}

/** ESMTP parameters "KEY=value" → { KEY: "value" }; keys upper-cased (RFC 5321 §4.1.2: case-insensitive). */
export function parseParams(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    if (a === '') continue;
    const eq = a.indexOf('=');
    const key = (eq < 0 ? a : a.slice(0, eq)).toUpperCase();
    if (key === '__PROTO__') continue;
    out[key] = eq < 0 ? '' : a.slice(eq + 1);
  }
  return out;
}

export class MilterSession {
  readonly closed: Promise<void>;
  private readonly log: Logger;
  private readonly reader: PacketReader;
  private readonly queue: MilterPacket[] = [];
  private queuedBytes = 0;
  private running = false;
  private paused = false;
  private isClosed = false;
  private resolveClosed!: () => void;

  private neg: Negotiated | undefined;
  private macros = new Map<string, Map<string, string>>();
  private tx: Transaction | undefined;
  private msg: MessageState | undefined;
  /** Verdict packets for the rest of the session after an accept/reject at connect or HELO. */
  private sessionReply: Buffer | undefined;
  private sessionDiscard = false;
  private sessionMutations: HeaderMutation[] = [];
  private sessionHits: RuleHit[] = [];
  /** A quarantine verdict at connect or HELO: every message of the session is held. */
  private sessionQuarantine: string | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly opts: MilterSessionOptions,
  ) {
    this.log = opts.deps.logger.child({ door: 'milter', session: opts.id });
    this.reader = new PacketReader(opts.maxPacket);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setNoDelay(true);
    socket.setTimeout(opts.readTimeoutMs, () => this.fail('read timeout', { timeoutMs: opts.readTimeoutMs }));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'milter socket error'));
    socket.on('close', () => this.onClose());
  }

  get id(): string {
    return this.opts.id;
  }

  /** Closes the connection now (server shutdown). */
  destroy(): void {
    this.socket.destroy();
  }

  // --------------------------------------------------------------------------------------------- reading

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    this.reader.push(chunk);
    // Whether anything read now will be answered, and whether the MTA is leaving (see ackNow below).
    let answered = false;
    let quit = false;
    for (;;) {
      const p = this.reader.next();
      if (p === undefined) break;
      if (p instanceof ProtocolError) {
        this.fail('bad packet from MTA', { error: p.message, offset: p.offset });
        return;
      }
      const type = ANSWERABLE.get(p.code);
      if (type !== undefined && this.replies(type)) answered = true;
      else if (p.code === Cmd.QUIT) quit = true;
      this.queue.push(p);
      this.queuedBytes += p.payload.length + 5;
    }
    if (this.queuedBytes > 2 * this.opts.maxPacket && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    if (!this.running) void this.run();
    // Nothing read now gets an answer (macros of an event the MTA does not send, an ABORT, events it expects no
    // reply to): ACK it at once, so the MTA's next write does not wait on Nagle for our delayed ACK. An answer
    // carries the ACK anyway, and after QUIT nothing follows. Measured with Postfix: the one such read per message
    // is smtpd's hand-off flush with DATA's macros (NODATA).
    if (!answered && !quit && this.opts.ackNow !== undefined && !this.isClosed) this.opts.ackNow();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.isClosed) {
        const p = this.queue.shift() as MilterPacket;
        this.queuedBytes -= p.payload.length + 5;
        const pending = this.handle(p);
        if (pending) await pending;
        if (this.paused && this.queuedBytes <= this.opts.maxPacket) {
          this.paused = false;
          this.socket.resume();
        }
      }
    } catch (err) {
      this.fail('internal error', { err: err instanceof Error ? err.stack ?? err.message : String(err) });
    } finally {
      this.running = false;
    }
  }

  private fail(reason: string, fields: object): void {
    if (this.isClosed) return;
    this.log.warn({ ...fields, reason }, 'closing milter connection');
    this.socket.destroy();
    this.onClose();
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.queue.length = 0;
    this.abortMessage();
    this.resolveClosed();
  }

  private write(buf: Buffer): void {
    if (!this.isClosed && !this.socket.destroyed) this.socket.write(buf);
  }

  private replies(type: MilterCommand['type']): boolean {
    if (type === 'data' && this.neg !== undefined && (this.neg.protocol & Proto.NODATA) !== 0) return false;
    const bit = NO_REPLY_BIT[type];
    return bit === undefined || this.neg === undefined || (this.neg.protocol & bit) === 0;
  }

  private macro(name: string): string | undefined {
    const bare = name.startsWith('{') ? name.slice(1, -1) : name;
    const braced = `{${bare}}`;
    for (let i = MACRO_ORDER.length - 1; i >= 0; i--) {
      const m = this.macros.get(MACRO_ORDER[i] as string);
      if (!m) continue;
      const v = m.get(braced) ?? m.get(bare);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /** A command of `stage` arrived: macros of later stages no longer apply. */
  private clearMacrosAfter(stage: string): void {
    const i = MACRO_ORDER.indexOf(stage as (typeof MACRO_ORDER)[number]);
    for (const s of MACRO_ORDER.slice(i + 1)) this.macros.delete(s);
  }

  // --------------------------------------------------------------------------------------------- dispatch

  /** Handles one packet; returns a promise only when it has to wait (keeps the hot path synchronous). */
  private handle(packet: MilterPacket): Promise<void> | undefined {
    const cmd = decodeCommand(packet);
    if (cmd instanceof ProtocolError) {
      this.fail('bad command from MTA', { error: cmd.message });
      return undefined;
    }
    if (this.neg === undefined && cmd.type !== 'optneg') {
      this.fail('command before option negotiation', { command: cmd.type });
      return undefined;
    }
    if (this.dataSkipped(cmd.type)) {
      // NODATA: the MTA sends no DATA, so DATA's stage runs now, before the first event that follows it.
      return this.onDataCommand(true).then(() => this.dispatch(cmd));
    }
    return this.dispatch(cmd);
  }

  /** With NODATA negotiated: `type` follows DATA, and this message's DATA stage has not run yet. */
  private dataSkipped(type: MilterCommand['type']): boolean {
    if (type !== 'header' && type !== 'eoh' && type !== 'body' && type !== 'eob') return false;
    return this.neg !== undefined && (this.neg.protocol & Proto.NODATA) !== 0 && this.msg?.dataSeen !== true;
  }

  private dispatch(cmd: MilterCommand): Promise<void> | undefined {
    switch (cmd.type) {
      case 'optneg':
        return this.onOptneg(cmd);
      case 'macro':
        this.macros.set(cmd.stage, new Map(cmd.macros));
        return undefined;
      case 'connect':
        return this.onConnect(cmd);
      case 'helo':
        return this.onHelo(cmd.name);
      case 'mail':
        return this.onMail(cmd.args);
      case 'rcpt':
        return this.onRcpt(cmd.args);
      case 'data':
        return this.onDataCommand();
      case 'header':
        return this.onHeader(cmd.name, cmd.value);
      case 'eoh':
        return this.onEoh();
      case 'body':
        this.onBody(cmd.chunk, this.replies('body'));
        return this.scanBacklog();
      case 'eob':
        return this.onEom(cmd.chunk);
      case 'abort':
        this.clearMacrosAfter('H');
        this.abortMessage();
        return undefined;
      case 'quit':
        this.abortMessage();
        // The MTA sends nothing after QUIT: close now (our FIN follows what we wrote) rather than half-close and
        // wait for its FIN, which cost one more wake-up and two system calls per connection.
        if (this.socket.writableLength === 0) this.socket.destroy();
        else this.socket.destroySoon();
        return undefined;
      case 'quitNc':
        // A new SMTP session follows on this connection (options stay negotiated).
        this.abortMessage();
        this.macros.clear();
        this.tx = undefined;
        this.sessionReply = undefined;
        this.sessionDiscard = false;
        this.sessionMutations = [];
        this.sessionHits = [];
        this.sessionQuarantine = undefined;
        return undefined;
      case 'unknown':
        if (this.replies('unknown')) this.write(this.sessionReply ?? SIMPLE_PACKETS.continue);
        return undefined;
    }
  }

  private onOptneg(cmd: Extract<MilterCommand, { type: 'optneg' }>): undefined {
    const deps = this.opts.deps;
    const opts = { noReply: this.opts.noReply === true, delayReject: this.opts.delayReject === true, promptAcks: this.opts.promptAcks === true };
    // Postfix opens a milter connection per SMTP session and offers the same options each time: the answer for
    // one offer, rules and door options is computed and framed once (per loaded ruleset: keyed by its needs).
    const key = `${cmd.version}/${cmd.actions}/${cmd.protocol}/${deps.scanners.enabled ? 1 : 0}${opts.noReply ? 1 : 0}${opts.delayReject ? 1 : 0}${opts.promptAcks ? 1 : 0}`;
    let byOffer = NEGOTIATED.get(deps.policy.needs);
    if (byOffer === undefined) NEGOTIATED.set(deps.policy.needs, (byOffer = new Map()));
    let answer = byOffer.get(key);
    if (answer === undefined) {
      const neg = negotiate(cmd, { needs: deps.policy.needs, scanners: deps.scanners.enabled }, opts);
      if (neg instanceof ProtocolError) {
        this.fail('option negotiation failed', { error: neg.message });
        return undefined;
      }
      answer = { neg, packet: encodeReply({ type: 'optneg', ...neg }) };
      // Bounded: an MTA that offers ever-different options gets them computed each time instead.
      if (byOffer.size < 64) byOffer.set(key, answer);
    }
    const neg = answer.neg;
    this.neg = neg;
    this.log.debug({ offered: { version: cmd.version, actions: cmd.actions, protocol: cmd.protocol }, version: neg.version, actions: neg.actions, protocol: neg.protocol }, 'milter options negotiated');
    this.write(answer.packet);
    return undefined;
  }

  // --------------------------------------------------------------------------------------------- stages

  private apply(event: StageEvent): void {
    if (this.tx) this.tx = reduceTransaction(this.tx, event);
  }

  /** Makes sure a transaction exists (an MTA that skipped CONNECT still gets one). */
  private ensureTx(): Transaction {
    if (!this.tx) this.tx = startTransaction({ stage: 'connect', door: 'milter', client: { ip: this.macro('client_addr') ?? '0.0.0.0', port: 0 } }, this.opts.id, Date.now());
    return this.tx;
  }

  private async judge(stage: RuleStage, replied: boolean): Promise<Verdict> {
    const policy = this.opts.deps.policy;
    if (!policy.needs.stages.has(stage)) return CONTINUE;
    const tx = this.ensureTx();
    let v: Verdict;
    try {
      const p = policy.evaluate(stage, tx);
      v = replied ? await this.withProgress(p) : await p;
    } catch (err) {
      this.log.error({ stage, err: err instanceof Error ? err.message : String(err) }, 'policy evaluation failed');
      v = { action: 'tempfail', mutations: [], effects: [], hits: [] };
    }
    if (v.effects.length > 0) {
      try {
        this.opts.deps.effects.run(v.effects, tx);
      } catch (err) {
        this.log.error({ stage, err: err instanceof Error ? err.message : String(err) }, 'effect runner failed');
      }
    }
    return v;
  }

  /** Sends SMFIR_PROGRESS every progressIntervalMs until `p` settles. */
  private async withProgress<T>(p: Promise<T>): Promise<T> {
    const timer = setInterval(() => this.write(SIMPLE_PACKETS.progress), this.opts.progressIntervalMs);
    try {
      return await p;
    } finally {
      clearInterval(timer);
    }
  }

  /** Renders a verdict for a command that expects a reply, recording message/session state as a side effect. */
  private render(v: Verdict, stage: RuleStage): Buffer {
    const sessionLevel = stage === 'connect' || stage === 'helo';
    if (sessionLevel) this.sessionHits.push(...v.hits);
    else this.currentMessage().hits.push(...v.hits);
    if (v.action === 'continue' || v.action === 'quarantine') {
      if (sessionLevel) this.sessionMutations.push(...v.mutations);
      else this.currentMessage().mutations.push(...v.mutations);
    }
    switch (v.action) {
      case 'continue':
        return SIMPLE_PACKETS.continue;
      case 'accept':
        if (stage === 'rcpt') return SIMPLE_PACKETS.continue;
        if (sessionLevel) return (this.sessionReply = SIMPLE_PACKETS.accept);
        this.currentMessage().decided = 'accept';
        return SIMPLE_PACKETS.accept;
      case 'reject':
      case 'tempfail': {
        const pkt = this.refusal(v, v.action);
        if (sessionLevel) this.sessionReply = pkt;
        else if (stage !== 'rcpt') {
          const m = this.currentMessage();
          m.decided = v.action;
          m.refusal = pkt;
        }
        return pkt;
      }
      case 'discard':
        // Postfix ignores DISCARD at CONNECT/HELO: remember it and discard every message of the session.
        if (sessionLevel) {
          this.sessionDiscard = true;
          return SIMPLE_PACKETS.continue;
        }
        this.currentMessage().decided = 'discard';
        return SIMPLE_PACKETS.discard;
      case 'quarantine':
        // Sent at end of message (libmilter allows QUARANTINE only there); the message goes on until then.
        if (sessionLevel) this.sessionQuarantine ??= quarantineReason(v);
        else this.currentMessage().quarantine ??= quarantineReason(v);
        return SIMPLE_PACKETS.continue;
    }
  }

  private refusal(v: Verdict, action: 'reject' | 'tempfail'): Buffer {
    if (v.reply) {
      const r = renderReplyCode(v.reply, action);
      if (r.ok) return encodeReply({ type: 'replycode', text: r.text });
      this.log.warn({ problem: r.problem, code: v.reply.code }, 'verdict reply cannot be sent as SMFIR_REPLYCODE; sending a plain refusal');
    }
    return action === 'reject' ? SIMPLE_PACKETS.reject : SIMPLE_PACKETS.tempfail;
  }

  private currentMessage(): MessageState {
    return (this.msg ??= newMessage());
  }

  /** Runs a stage: reply with the session verdict if one stands, else evaluate and render. */
  private async step(type: MilterCommand['type'], stage: RuleStage): Promise<void> {
    const replied = this.replies(type);
    if (this.sessionReply) {
      if (replied) this.write(this.sessionReply);
      return;
    }
    const m = stage === 'connect' || stage === 'helo' ? undefined : this.msg;
    if (m?.delayed !== undefined && replied && (stage === 'rcpt' || stage === 'data')) {
      // A MAIL verdict held back (delayReject): every recipient gets it, as if each were refused or accepted.
      this.write(m.delayed);
      return;
    }
    let v: Verdict | undefined;
    let pkt: Buffer = SIMPLE_PACKETS.continue;
    // Once a message is decided (or held), later stages of it are not judged again.
    if (!m?.decided && m?.quarantine === undefined) {
      v = await this.judge(stage, replied);
      pkt = this.render(v, stage);
    }
    if (stage === 'data' && replied && pkt === SIMPLE_PACKETS.continue && this.doneAtData()) {
      // Nothing later in this message can change its fate: SMFIR_ACCEPT, and Postfix sends none of its headers,
      // body or end of message (MILTER8_STAT_ACCEPT_MSG). The message is logged now, its size unknown.
      this.write(SIMPLE_PACKETS.accept);
      this.finish(this.currentMessage(), 'accept', false);
      return;
    }
    if (replied) this.write(pkt);
    else if (v && v.action !== 'continue' && this.delays(stage)) {
      // connect/helo verdicts live on as sessionReply/sessionDiscard/sessionQuarantine (render); MAIL's here.
      if (stage === 'mail' && pkt !== SIMPLE_PACKETS.continue && m) m.delayed = pkt;
    } else if (v && v.action !== 'continue' && stage !== 'data') this.log.warn({ stage, action: v.action }, 'verdict at a stage negotiated without reply; ignored');
    // (DATA without a reply is NODATA: render() kept its verdict for the end of message.)
    if (stage === 'rcpt' && this.tx && (!v || v.action === 'continue' || v.action === 'accept' || v.action === 'quarantine')) this.tx = acceptRecipient(this.tx);
  }

  /** This stage's verdicts are answered later, at RCPT (delayReject). */
  private delays(stage: RuleStage): boolean {
    return this.opts.delayReject === true && (stage === 'connect' || stage === 'helo' || stage === 'mail');
  }

  /** At DATA: no rule, scanner or pending edit/hold/discard needs anything after DATA of this message. */
  private doneAtData(): boolean {
    const stages = this.opts.deps.policy.needs.stages;
    if (stages.has('header') || stages.has('eoh') || stages.has('eom') || this.opts.deps.scanners.enabled) return false;
    if (this.sessionDiscard || this.sessionQuarantine !== undefined || this.sessionMutations.length > 0) return false;
    const m = this.msg;
    return m === undefined || (m.decided === undefined && m.quarantine === undefined && m.mutations.length === 0 && m.scan === undefined);
  }

  private onConnect(cmd: Extract<MilterCommand, { type: 'connect' }>): Promise<void> {
    this.clearMacrosAfter('C');
    this.abortMessage();
    const ip = cmd.family === 'inet' || cmd.family === 'inet6' ? cmd.address : this.macro('client_addr') ?? '0.0.0.0';
    const port = cmd.family === 'inet' || cmd.family === 'inet6' ? cmd.port : Number(this.macro('client_port') ?? 0) || 0;
    const name = cmd.hostname.startsWith('[') || cmd.hostname === '' ? 'unknown' : cmd.hostname;
    const daemonAddr = this.macro('daemon_addr');
    const daemonPort = Number(this.macro('daemon_port'));
    const destination = daemonAddr !== undefined ? { ip: daemonAddr, port: Number.isInteger(daemonPort) ? daemonPort : 0 } : undefined;
    this.tx = startTransaction(
      { stage: 'connect', door: 'milter', client: { ip, port }, clientName: name, ...(destination ? { destination, destinationSource: 'milter' as const } : {}) },
      this.opts.id,
      Date.now(),
    );
    this.sessionReply = undefined;
    this.sessionDiscard = false;
    this.sessionMutations = [];
    this.sessionHits = [];
    this.sessionQuarantine = undefined;
    return this.step('connect', 'connect');
  }

  private onHelo(name: string): Promise<void> {
    this.clearMacrosAfter('H');
    this.abortMessage();
    const tx = this.ensureTx();
    const tlsVersion = this.macro('tls_version');
    const cipher = this.macro('cipher');
    if ((tlsVersion || cipher) && !tx.session.tls.active) {
      this.apply({ stage: 'tls', active: true, ...(tlsVersion ? { protocol: tlsVersion } : {}), ...(cipher ? { cipher } : {}) });
    }
    this.apply({ stage: 'helo', name, extended: false });
    return this.step('helo', 'helo');
  }

  private async onMail(args: readonly string[]): Promise<void> {
    this.clearMacrosAfter('M');
    this.abortMessage();
    const tx = this.ensureTx();
    this.msg = newMessage();
    const user = this.macro('auth_authen');
    if (user && tx.session.auth?.user !== user) {
      const mech = this.macro('auth_type');
      this.apply({ stage: 'auth', user, ...(mech ? { mechanism: mech } : {}) });
      if (this.opts.deps.policy.needs.stages.has('auth') && !this.sessionReply) {
        const v = await this.judge('auth', this.replies('mail'));
        if (v.action !== 'continue') {
          this.apply({ stage: 'mail', address: stripBrackets(args[0] ?? ''), params: parseParams(args.slice(1)) });
          const pkt = this.render(v, 'mail');
          if (this.replies('mail')) this.write(pkt);
          else if (this.delays('mail') && pkt !== SIMPLE_PACKETS.continue && this.msg) this.msg.delayed = pkt;
          return;
        }
        this.render(v, 'mail');
      }
    }
    this.apply({ stage: 'mail', address: stripBrackets(args[0] ?? ''), params: parseParams(args.slice(1)) });
    return this.step('mail', 'mail');
  }

  private onRcpt(args: readonly string[]): Promise<void> {
    this.clearMacrosAfter('R');
    this.ensureTx();
    this.currentMessage();
    this.apply({ stage: 'rcpt', address: stripBrackets(args[0] ?? ''), params: parseParams(args.slice(1)) });
    return this.step('rcpt', 'rcpt');
  }

  /** `skipped`: NODATA, run before the event that follows DATA, whose macros have already arrived. */
  private onDataCommand(skipped = false): Promise<void> {
    if (!skipped) this.clearMacrosAfter('T');
    this.ensureTx();
    this.currentMessage().dataSeen = true;
    this.apply({ stage: 'data' });
    this.startScan();
    return this.step('data', 'data');
  }

  private startScan(): void {
    const scanners = this.opts.deps.scanners;
    const m = this.currentMessage();
    if (!scanners.enabled || m.scan || m.decided || m.truncated || m.bytes > 0 || this.sessionReply) return;
    const tx = this.ensureTx();
    m.scan = scanners.start({
      sessionId: this.opts.id,
      client: tx.session.client,
      ...(tx.session.helo !== undefined ? { helo: tx.session.helo } : {}),
      ...(tx.envelope.mailFrom !== undefined ? { sender: tx.envelope.mailFrom } : {}),
      recipients: tx.envelope.rcpts,
      ...(tx.session.destination ? { destination: tx.session.destination } : {}),
    });
  }

  private feed(bytes: Buffer): void {
    const m = this.currentMessage();
    const before = m.bytes;
    m.bytes += bytes.length;
    const cap = this.opts.deps.limits.messageSize;
    if (cap > 0 && m.bytes > cap && m.scan) {
      m.scan.abort();
      delete m.scan;
      m.truncated = true;
      this.log.info({ bytes: m.bytes, limit: cap }, 'message over the size limit; scanners skipped');
    }
    // Past the most any scanner reads (ConfiguredScannerSet.maxScanBytes), stop copying: the chunk that crosses
    // the line is still written, so each scanner sees that the message is larger than what it takes.
    const scanMax = (this.opts.deps.scanners as { maxScanBytes?: number }).maxScanBytes ?? 0;
    if (scanMax > 0 && before > scanMax) return;
    m.scan?.write(bytes);
  }

  private onHeader(name: string, value: string): Promise<void> | undefined {
    this.currentMessage();
    const leadspc = this.neg !== undefined && (this.neg.protocol & Proto.HDR_LEADSPC) !== 0;
    this.startScan();
    const line = `${name}:${leadspc ? '' : ' '}${value.replace(/\r?\n/g, '\r\n')}\r\n`;
    if (this.msg?.scan) this.feed(Buffer.from(line, 'utf8'));
    else this.currentMessage().bytes += Buffer.byteLength(line);
    // Rules see the value without the whitespace after the colon, the same behind every door. Headers are kept
    // only for rules that read them (headers arrive also for the size, scanners and edits).
    if (this.opts.deps.policy.needs.headers) this.apply({ stage: 'header', name, value: leadspc ? value.replace(/^[ \t]+/, '') : value });
    if (!this.opts.deps.policy.needs.stages.has('header') && !this.sessionReply && !this.msg?.decided) {
      if (this.replies('header')) this.write(SIMPLE_PACKETS.continue);
      return undefined;
    }
    return this.step('header', 'header');
  }

  private closeHeaders(): void {
    const m = this.currentMessage();
    if (m.headersClosed) return;
    m.headersClosed = true;
    this.startScan();
    this.feed(CRLF);
  }

  private onEoh(): Promise<void> {
    this.clearMacrosAfter('N');
    this.closeHeaders();
    this.apply({ stage: 'eoh' });
    return this.step('eoh', 'eoh');
  }

  /**
   * While the scanners lag more than SCAN_BACKLOG_LIMIT behind, the next packets wait (run() awaits this; packets
   * queue up to their bound, then the MTA's socket is paused), so a slow or stopped scanner cannot fill memory.
   */
  private scanBacklog(): Promise<void> | undefined {
    const scan = this.msg?.scan;
    return scan && scan.backlog > SCAN_BACKLOG_LIMIT ? scan.drained() : undefined;
  }

  private onBody(chunk: Buffer, replied: boolean): void {
    this.closeHeaders();
    const m = this.currentMessage();
    this.feed(chunk);
    this.apply({ stage: 'body', bytes: chunk.length });
    if (!replied) return;
    // SKIP (offered by the MTA, else we negotiated NR_BODY) once nothing more of the body is needed.
    const skip = m.decided !== undefined || m.truncated || !m.scan;
    if (skip && this.neg && (this.neg.protocol & Proto.SKIP) !== 0 && !m.skipping) {
      m.skipping = true;
      this.write(SIMPLE_PACKETS.skip);
    } else this.write(SIMPLE_PACKETS.continue);
  }

  private async onEom(chunk: Buffer): Promise<void> {
    this.clearMacrosAfter('E');
    if (chunk.length > 0) this.onBody(chunk, false);
    this.closeHeaders();
    const m = this.currentMessage();
    this.ensureTx();
    if (this.sessionReply) {
      this.write(this.sessionReply);
      this.finish(m, 'session');
      return;
    }
    if (m.refusal) {
      m.scan?.abort();
      delete m.scan;
      this.write(m.refusal);
      this.finish(m, m.decided ?? 'reject');
      return;
    }
    if (m.scan) {
      const job = m.scan;
      delete m.scan;
      const outcome = await this.withProgress(job.end());
      this.apply({ stage: 'scan', results: outcome.results });
    } else if (m.truncated) {
      this.apply({ stage: 'scan', results: { skipped: ['size-limit'], failed: {} } });
    }
    this.apply({ stage: 'eom', size: m.bytes });
    let v: Verdict = CONTINUE;
    if (!m.decided && !m.quarantine && !this.sessionDiscard) v = await this.judge('eom', true);
    m.hits.push(...v.hits);
    const action = this.sessionDiscard ? 'discard' : m.decided === 'discard' ? 'discard' : v.action;
    const out: Buffer[] = [];
    if (action === 'reject' || action === 'tempfail') {
      out.push(this.refusal(v, action));
    } else if (action === 'discard') {
      out.push(SIMPLE_PACKETS.discard);
    } else {
      out.push(...this.editPackets([...this.sessionMutations, ...m.mutations, ...v.mutations]));
      const reason = v.action === 'quarantine' ? quarantineReason(v) : m.quarantine ?? this.sessionQuarantine;
      if (reason !== undefined) {
        if (this.neg && (this.neg.actions & Action.QUARANTINE) !== 0) out.push(encodeReply({ type: 'quarantine', reason: cleanText(reason) || 'quarantined' }));
        else this.log.warn({}, 'quarantine verdict but the MTA did not grant SMFIF_QUARANTINE');
        m.quarantine = reason;
      }
      out.push(action === 'accept' ? SIMPLE_PACKETS.accept : SIMPLE_PACKETS.continue);
    }
    this.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
    this.finish(m, m.quarantine !== undefined && action !== 'reject' && action !== 'tempfail' && action !== 'discard' ? 'quarantine' : action);
  }

  /** The message's headers and body come to us (not NOHDRS/NOBODY), so its size is counted. */
  private sizeCounted(): boolean {
    return this.neg !== undefined && (this.neg.protocol & (Proto.NOHDRS | Proto.NOBODY)) === 0;
  }

  private finish(m: MessageState, action: string, sizeKnown = this.sizeCounted()): void {
    const tx = this.tx;
    if (tx) {
      this.log.info(
        {
          queueId: this.macro('i'),
          client: tx.session.client.ip,
          from: tx.envelope.mailFrom,
          rcpts: tx.envelope.rcpts,
          ...(sizeKnown ? { size: m.bytes } : {}),
          action: m.decided ?? action,
          hits: [...this.sessionHits, ...m.hits].map((h) => h.rule),
        },
        'milter message',
      );
      this.tx = finishMessage(tx);
    }
    this.msg = undefined;
  }

  /** Header edits, in an order that keeps Postfix's indexes meaningful (protocols.md §1.8). */
  private editPackets(mutations: readonly HeaderMutation[]): Buffer[] {
    if (mutations.length === 0) return [];
    const neg = this.neg;
    const leadspc = neg !== undefined && (neg.protocol & Proto.HDR_LEADSPC) !== 0;
    const canAdd = neg !== undefined && (neg.actions & Action.ADDHDRS) !== 0;
    const canChange = neg !== undefined && (neg.actions & Action.CHGHDRS) !== 0;
    const changes = mutations.filter((m) => m.kind === 'change' && m.value !== '');
    // Deleting shifts later indexes of the same name: delete from the highest index down.
    const deletes = mutations.filter((m) => m.kind === 'change' && m.value === '').sort((a, b) => ((b as { index: number }).index - (a as { index: number }).index));
    const adds = mutations.filter((m) => m.kind !== 'change');
    const out: Buffer[] = [];
    for (const m of [...changes, ...deletes, ...adds]) {
      if (!HEADER_NAME.test(m.name)) {
        this.log.warn({ header: m.name }, 'header edit with an invalid name skipped');
        continue;
      }
      const value = m.value === '' ? '' : foldValue(m.value, leadspc);
      if (m.kind === 'change') {
        if (!canChange) {
          this.log.warn({ header: m.name }, 'header change needs SMFIF_CHGHDRS, which the MTA did not grant');
          continue;
        }
        out.push(encodeReply({ type: 'chgheader', index: Math.max(0, Math.min(m.index, 0xffffffff)), name: m.name, value }));
      } else if (!canAdd) {
        this.log.warn({ header: m.name }, 'header add needs SMFIF_ADDHDRS, which the MTA did not grant');
      } else if (m.kind === 'insert') {
        out.push(encodeReply({ type: 'insheader', index: Math.max(0, Math.min(m.index, 0xffffffff)), name: m.name, value }));
      } else {
        out.push(encodeReply({ type: 'addheader', name: m.name, value }));
      }
    }
    return out;
  }

  private abortMessage(): void {
    const m = this.msg;
    if (m?.scan) m.scan.abort();
    if (m && this.tx?.envelope.mailFrom !== undefined) {
      this.log.info(
        { queueId: this.macro('i'), client: this.tx.session.client.ip, from: this.tx.envelope.mailFrom, rcpts: this.tx.envelope.rcpts, action: m.decided ?? 'aborted', hits: [...this.sessionHits, ...m.hits].map((h) => h.rule) },
        'milter message',
      );
    }
    this.msg = undefined;
    if (this.tx && (this.tx.envelope.mailFrom !== undefined || this.tx.message.headers.length > 0)) this.apply({ stage: 'reset' });
  }
}

function quarantineReason(v: Verdict): string {
  return v.reason ?? v.hits[0]?.rule ?? 'quarantined by policy';
}

/** NULs and CRs removed: text safe inside a C string. */
function cleanText(s: string): string {
  return s.replace(/[\0\r\n]+/g, ' ').trim();
}

/**
 * A header value for the wire: LF-only folding (the MTA adds the CR), every continuation line starting with
 * whitespace, no NUL; with HDR_LEADSPC we supply the space after the colon ourselves.
 */
export function foldValue(value: string, leadspc: boolean): string {
  const lines = value.replace(/\0/g, '').split(/\r\n|\r|\n/);
  const folded = lines.map((l, i) => (i === 0 || /^[ \t]/.test(l) ? l : `\t${l}`)).filter((l, i) => i === 0 || l.trim() !== '');
  const v = folded.join('\n');
  return leadspc && !/^[ \t]/.test(v) ? ` ${v}` : v;
}
