/**
 * One SMTP session from Postfix (content_filter smtp client, or the smtpd of an smtpd_proxy_filter) to the filter
 * door, proxsmtpd's role done with our engine:
 *
 *  - The next hop is connected before we greet (its EHLO tells which extensions we may offer: DSN, 8BITMIME,
 *    SMTPUTF8 are offered only if it has them, so no parameter is lost). Next hop down → 421 greeting: Postfix
 *    keeps the mail queued.
 *  - The envelope goes through in real time: MAIL and each RCPT are judged by the rules, then forwarded, and the
 *    next hop's own reply goes back (exact per-recipient status). XFORWARD from Postfix (per transaction) names the
 *    original client: that is the client the rules see, and it is passed on before each MAIL.
 *  - DATA: we answer 354 ourselves and spool the message (private 0600 file past 256 KiB, up to the size limit)
 *    while the scanners read it as a stream. At the final dot: header/eoh rules, scanner results, eom rules. Only
 *    then is DATA sent to the next hop, streamed from the spool with the verdicts' header edits applied, and the
 *    next hop's reply to its final dot is our reply to Postfix's. Nothing is acknowledged that the next hop did not
 *    accept. A refused message is never sent on (the next hop gets RSET, never a final dot).
 */
import { createReadStream } from 'node:fs';
import type { Socket } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import type { Logger } from '../core/logger.js';
import type { Limits } from '../core/limits.js';
import { quarantineMetaFromTransaction } from '../core/quarantine-sink.js';
import { formatReply, replyProblem, type SmtpReply } from '../core/smtp-reply.js';
import type { RuleStage } from '../core/stage.js';
import { acceptRecipient, reduceTransaction, startTransaction, type Transaction } from '../core/transaction.js';
import type { HeaderMutation, Verdict } from '../core/verdict.js';
import type { DoorDeps } from '../daemon/door.js';
import { MessageSpool } from '../scanners/message-spool.js';
import { SCAN_BACKLOG_LIMIT, type ScanJob } from '../scanners/scanner.js';
import { formatCommand, parseCommand, strayByte } from '../smtp/command-parser.js';
import { DataFramer } from '../smtp/data-framer.js';
import { HeaderCollector } from '../smtp/header-collector.js';
import { LineReader } from '../smtp/line-reader.js';
import type { ParsedReply } from '../smtp/reply-parser.js';
import { HeaderRewriter } from './filter-headers.js';
import { NextHopClient, NextHopError, type NextHopOptions } from './filter-next-hop.js';
import { encodeXForward, parseXForward, xforwardAddress, xforwardNamesFromEhlo, XFORWARD_NAMES, type XForwardAttrs } from './filter-xforward.js';

/**
 * A quarantine callback instead of `DoorDeps.quarantine` (the daemon's store, used when this is absent); with
 * neither, a quarantine verdict tempfails.
 */
export type FilterQuarantine = (content: Readable, info: { readonly sessionId: string; readonly client: string; readonly sender: string; readonly recipients: readonly string[]; readonly reason: string }) => Promise<void>;

export interface FilterSessionConfig {
  readonly nextHop: Omit<NextHopOptions, 'helo'>;
  /** Accept XFORWARD from Postfix and pass it on. */
  readonly xforward: boolean;
  readonly maxMessageSize: number;
  /** Private directory (0700) for spool files. */
  readonly spoolDir: string;
  readonly quarantine?: FilterQuarantine;
}

const R = {
  ok: '250 2.0.0 Ok\r\n',
  bye: '221 2.0.0 Bye\r\n',
  needHelo: '503 5.5.1 Error: send HELO/EHLO first\r\n',
  nested: '503 5.5.1 Error: nested MAIL command\r\n',
  needMail: '503 5.5.1 Error: need MAIL command\r\n',
  needRcpt: '503 5.5.1 Error: need RCPT command\r\n',
  noValidRcpt: '554 5.5.1 Error: no valid recipients\r\n',
  inTransaction: '503 5.5.1 Error: MAIL transaction in progress\r\n',
  notImplemented: '502 5.5.1 Error: command not implemented\r\n',
  unknown: '502 5.5.2 Error: command not recognized\r\n',
  tooLong: '500 5.5.0 Error: line too long\r\n',
  strayByte: '500 5.5.2 Error: bare CR or NUL in command line\r\n',
  tooBig: '552 5.3.4 Error: message file too big\r\n',
  tooManyRcpts: '452 4.5.3 Error: too many recipients\r\n',
  tooManyErrors: '421 4.7.0 Error: too many errors\r\n',
  nextHopDown: '451 4.4.1 Next hop unavailable, try again later\r\n',
  local: '451 4.3.0 Temporary local problem, please try again later\r\n',
  timeout: '421 4.4.2 Error: timeout exceeded\r\n',
  go: '354 End data with <CR><LF>.<CR><LF>\r\n',
  discarded: '250 2.0.0 Ok: discarded by policy\r\n',
  quarantined: '250 2.0.0 Ok: held for review\r\n',
  noQuarantine: '451 4.7.1 Message held for review, try again later\r\n',
} as const;

const DEFAULT_REJECT: SmtpReply = { code: 550, enhanced: '5.7.1', lines: ['Message rejected by policy'] };
const DEFAULT_TEMPFAIL: SmtpReply = { code: 451, enhanced: '4.7.1', lines: ['Message deferred by policy, try again later'] };

/** A verdict's reply as SMTP text, never with the wrong class. */
export function verdictReply(v: Verdict): string {
  const kind = v.action === 'reject' ? 'reject' : 'tempfail';
  const fallback = kind === 'reject' ? DEFAULT_REJECT : DEFAULT_TEMPFAIL;
  const r = v.reply && replyProblem(v.reply, kind) === undefined ? v.reply : fallback;
  return formatReply(r);
}

interface Message {
  tx: Transaction;
  readonly sender: string;
  /** Recipients the next hop accepted (or that we accepted for a message we will not send on). */
  readonly recipients: string[];
  /** A decision made before the end of data that ends the message there (discard, quarantine, accept). */
  decided?: Verdict;
  readonly mutations: HeaderMutation[];
  readonly rules: string[];
  /** The next hop has a transaction open for this message. */
  nextHopOpen: boolean;
  data?: {
    readonly framer: DataFramer;
    readonly spool: MessageSpool;
    readonly headers: HeaderCollector;
    readonly scan: ScanJob | undefined;
    size: number;
  };
}

let sessionCounter = 0;

export class FilterSession {
  private readonly reader: LineReader;
  private mode: 'command' | 'data' | 'eom' | 'closed' = 'command';
  private busy = false;
  /** Reading is paused until the message's spool and scanners have taken their backlog. */
  private waitingForSpool = false;
  private helo: string | undefined;
  private xfwd: XForwardAttrs | undefined;
  private msg: Message | undefined;
  private errors = 0;
  private messages = 0;
  private readonly nextHop: { client: NextHopClient | undefined };
  private timer: NodeJS.Timeout | undefined;
  readonly id: string;
  readonly done: Promise<void>;
  private draining = false;
  private readonly log: Logger;

  constructor(
    private readonly socket: Socket,
    private readonly deps: DoorDeps,
    private readonly cfg: FilterSessionConfig,
    log: Logger,
  ) {
    this.id = `f${(++sessionCounter).toString(36)}`;
    this.log = log.child({ session: this.id });
    this.reader = new LineReader(Math.max(deps.limits.commandLine, 1024));
    this.nextHop = { client: undefined };
    this.done = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'filter client socket error'));
    socket.once('close', () => this.cleanup());
  }

  get idle(): boolean {
    return !this.busy && this.msg === undefined;
  }

  /** Connect the next hop, then greet. */
  async start(): Promise<void> {
    this.socket.pause();
    try {
      await this.ensureNextHop();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'next hop unavailable at connect; refusing the session with 421');
      this.write(`421 4.4.1 ${this.deps.hostname} Next hop unavailable, try again later\r\n`);
      this.close();
      return;
    }
    this.write(`220 ${this.deps.hostname} ESMTP sluice filter\r\n`);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.armTimer();
    this.socket.resume();
  }

  /** Finish the message in progress (if any), then close. */
  drain(): void {
    this.draining = true;
    if (this.idle) {
      this.write('421 4.3.2 Service shutting down\r\n');
      this.close();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    const ms = this.mode === 'data' ? this.deps.limits.dataTimeout : this.deps.limits.commandTimeout;
    this.timer = setTimeout(() => {
      if (this.busy) return this.armTimer();
      this.log.info({ mode: this.mode }, 'filter session timed out');
      this.write(R.timeout);
      this.close();
    }, ms);
  }

  private write(text: string): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(text);
  }

  private close(): void {
    if (this.mode === 'closed') return;
    this.mode = 'closed';
    this.socket.end();
    // Read on (and discard) so the client's FIN is seen and the session ends with it, not 2 s later: the socket may
    // be paused here (a next hop that failed before the greeting, a command in progress).
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private cleanup(): void {
    this.mode = 'closed';
    if (this.timer) clearTimeout(this.timer);
    void this.abortMessage();
    void this.nextHop.client?.close();
    this.nextHop.client = undefined;
  }

  private onData(chunk: Buffer): void {
    if (this.mode === 'closed') return;
    this.armTimer();
    if (this.mode === 'data') {
      this.dataBytes(chunk);
      return;
    }
    this.reader.push(chunk);
    // Bound what a client may send ahead of our replies (pipelining depth × line length).
    if (this.reader.buffered > this.deps.limits.pipelineDepth * this.deps.limits.commandLine) {
      this.write(R.tooManyErrors);
      this.close();
      return;
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.socket.pause();
    try {
      for (;;) {
        if (this.mode === 'closed') return;
        if (this.mode === 'eom') {
          await this.endOfData();
          if (this.mode === 'eom') this.mode = 'command';
          if (this.draining) {
            this.write('421 4.3.2 Service shutting down\r\n');
            this.close();
            return;
          }
          continue;
        }
        if (this.mode === 'data') return;
        const ev = this.reader.next();
        if (ev === undefined) return;
        if (ev.kind === 'too-long') {
          this.error(R.tooLong);
          continue;
        }
        // A CR or NUL inside a line never reaches the next hop (its parameters are passed on as they came).
        if (strayByte(ev.line) !== undefined) {
          this.error(R.strayByte);
          continue;
        }
        await this.command(ev.line);
        // (re-read: the command may have switched to data mode)
        if ((this.mode as string) === 'data') {
          const rest = this.reader.takeRest();
          if (rest.length > 0) this.dataBytes(rest);
        }
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'filter session failed');
      this.write(R.local);
      this.close();
    } finally {
      this.busy = false;
      if (this.mode !== 'closed') {
        if (!this.waitingForSpool) this.socket.resume();
        this.armTimer();
      }
    }
  }

  private error(reply: string): void {
    this.write(reply);
    if (++this.errors >= this.deps.limits.errorBudget) {
      this.write(R.tooManyErrors);
      this.close();
    }
  }

  private async ensureNextHop(): Promise<NextHopClient> {
    const current = this.nextHop.client;
    if (current?.usable) return current;
    current?.destroy();
    const c = new NextHopClient({ ...this.cfg.nextHop, helo: this.deps.hostname });
    this.nextHop.client = c;
    await c.open();
    return c;
  }

  private ehloLines(): string[] {
    const nh = this.nextHop.client;
    const lines = [this.deps.hostname, 'PIPELINING', `SIZE ${this.cfg.maxMessageSize}`, 'ENHANCEDSTATUSCODES'];
    for (const ext of ['8BITMIME', 'DSN', 'SMTPUTF8']) if (nh?.has(ext)) lines.push(ext);
    if (this.cfg.xforward) lines.push(`XFORWARD ${XFORWARD_NAMES.join(' ')}`);
    return lines;
  }

  private async command(line: Buffer): Promise<void> {
    const cmd = parseCommand(line);
    switch (cmd.verb) {
      case 'EHLO':
      case 'HELO': {
        await this.resetMessage();
        this.xfwd = undefined;
        this.helo = cmd.name;
        if (cmd.verb === 'HELO') return this.write(`250 ${this.deps.hostname}\r\n`);
        const lines = this.ehloLines();
        return this.write(lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
      }
      case 'XFORWARD': {
        if (!this.cfg.xforward) return this.error('550 5.7.0 Error: insufficient authorization\r\n');
        if (this.msg) return this.error(R.inTransaction);
        const r = parseXForward(cmd.arg, this.xfwd ?? {});
        if (!r.ok) return this.error(`${r.reply}\r\n`);
        this.xfwd = r.attrs;
        return this.write(R.ok);
      }
      case 'MAIL':
        return await this.mail(cmd.address, cmd.params);
      case 'RCPT':
        return await this.rcpt(cmd.address, cmd.params);
      case 'DATA':
        return await this.dataCommand();
      case 'RSET':
        await this.resetMessage();
        this.xfwd = undefined;
        return this.write(R.ok);
      case 'NOOP':
        return this.write(R.ok);
      case 'QUIT':
        await this.resetMessage();
        this.write(R.bye);
        return this.close();
      case 'INVALID':
        return this.error(`501 5.5.4 Syntax error: ${cmd.problem.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)}\r\n`);
      case 'VRFY':
      case 'EXPN':
      case 'ETRN':
      case 'AUTH':
      case 'STARTTLS':
      case 'BDAT':
      case 'XCLIENT':
        return this.error(R.notImplemented);
      default:
        return this.error(R.unknown);
    }
  }

  /** The transaction as the rules see it: the original client from XFORWARD when Postfix sent it. */
  private startTx(): Transaction {
    const x = this.xfwd;
    const peer = this.socket.remoteAddress?.replace(/^::ffff:(?=\d+\.)/, '') ?? '';
    const ip = x?.ADDR !== undefined ? xforwardAddress(x.ADDR) : x ? '' : peer;
    const port = x?.PORT !== undefined ? Number(x.PORT) : x ? 0 : (this.socket.remotePort ?? 0);
    let tx = startTransaction(
      {
        stage: 'connect',
        door: 'filter',
        client: { ip, port },
        ...(x?.NAME !== undefined ? { clientName: x.NAME } : {}),
        ...(this.socket.localAddress ? { destination: { ip: this.socket.localAddress.replace(/^::ffff:(?=\d+\.)/, ''), port: this.socket.localPort ?? 0 } } : {}),
        destinationSource: x ? 'xforward' : 'none',
      },
      `${this.id}.${this.messages + 1}`,
      Date.now(),
    );
    const helo = x ? x.HELO : this.helo;
    if (helo !== undefined) tx = reduceTransaction(tx, { stage: 'helo', name: helo, extended: x ? (x.PROTO ?? '').toUpperCase() === 'ESMTP' : true });
    return tx;
  }

  private async evaluate(msg: Message, stage: RuleStage): Promise<Verdict> {
    const v = await this.deps.policy.evaluate(stage, msg.tx);
    if (v.effects.length > 0) this.deps.effects.run(v.effects, msg.tx);
    msg.mutations.push(...v.mutations);
    for (const h of v.hits) msg.rules.push(h.rule);
    return v;
  }

  /** Runs stages in order until one decides; accept ends rule evaluation for the message. */
  private async judge(msg: Message, stages: readonly RuleStage[]): Promise<Verdict | undefined> {
    if (msg.decided) return undefined;
    for (const stage of stages) {
      const v = await this.evaluate(msg, stage);
      if (v.action === 'continue') continue;
      if (v.action === 'reject' || v.action === 'tempfail') return v;
      msg.decided = v;
      return undefined;
    }
    return undefined;
  }

  private async mail(address: string, params: Readonly<Record<string, string>>): Promise<void> {
    if (this.helo === undefined) return this.error(R.needHelo);
    if (this.msg) return this.error(R.nested);
    const size = params['SIZE'];
    if (size !== undefined && Number(size) > this.cfg.maxMessageSize) return this.write('552 5.3.4 Message size exceeds fixed limit\r\n');
    let tx = this.startTx();
    const msg: Message = { tx, sender: address, recipients: [], mutations: [], rules: [], nextHopOpen: false };
    const stages: RuleStage[] = tx.session.helo !== undefined ? ['connect', 'helo'] : ['connect'];
    const early = await this.judge(msg, stages);
    if (early) return this.refuse(msg, early, 'connect');
    tx = reduceTransaction(msg.tx, { stage: 'mail', address, params });
    msg.tx = tx;
    const v = await this.judge(msg, ['mail']);
    if (v) return this.refuse(msg, v, 'mail');
    let reply: ParsedReply;
    try {
      const nh = await this.ensureNextHop();
      const x = this.xfwd;
      if (this.cfg.xforward && x && nh.has('XFORWARD')) {
        for (const line of encodeXForward(x, xforwardNamesFromEhlo(nh.extensions.get('XFORWARD') ?? ''))) {
          const xr = await nh.command(line);
          if (xr.code !== 250) this.log.warn({ code: xr.code }, 'next hop refused XFORWARD; continuing without it');
        }
      }
      reply = await nh.command(formatCommand({ verb: 'MAIL', address, params }).trimEnd());
    } catch (err) {
      return this.nextHopFailed(err);
    }
    if (reply.code >= 200 && reply.code < 300) {
      msg.nextHopOpen = true;
      this.msg = msg;
    }
    this.write(reply.raw);
  }

  private async rcpt(address: string, params: Readonly<Record<string, string>>): Promise<void> {
    const msg = this.msg;
    if (!msg) return this.error(R.needMail);
    if (msg.recipients.length >= this.deps.limits.recipients) return this.write(R.tooManyRcpts);
    msg.tx = reduceTransaction(msg.tx, { stage: 'rcpt', address, params });
    const v = await this.judge(msg, ['rcpt']);
    if (v) return this.write(verdictReply(v));
    let reply: ParsedReply;
    try {
      const nh = this.nextHop.client;
      if (!nh?.usable) throw new NextHopError('next hop connection lost');
      reply = await nh.command(formatCommand({ verb: 'RCPT', address, params }).trimEnd());
    } catch (err) {
      return this.nextHopFailed(err);
    }
    if (reply.code >= 200 && reply.code < 300) {
      msg.recipients.push(address);
      msg.tx = acceptRecipient(msg.tx);
    }
    this.write(reply.raw);
  }

  private async dataCommand(): Promise<void> {
    const msg = this.msg;
    if (!msg) return this.error(R.needMail);
    if (msg.recipients.length === 0) return this.write(R.noValidRcpt);
    msg.tx = reduceTransaction(msg.tx, { stage: 'data' });
    const v = await this.judge(msg, ['data']);
    if (v) {
      this.write(verdictReply(v));
      return await this.resetMessage();
    }
    const meta = {
      sessionId: msg.tx.session.id,
      client: msg.tx.session.client,
      ...(msg.tx.session.helo !== undefined ? { helo: msg.tx.session.helo } : {}),
      sender: msg.sender,
      recipients: msg.recipients,
    };
    msg.data = {
      framer: new DataFramer('normalise'),
      spool: new MessageSpool({ capacity: this.cfg.maxMessageSize, memoryLimit: 256 * 1024, dir: this.cfg.spoolDir }),
      headers: new HeaderCollector(),
      scan: this.deps.scanners.enabled ? this.deps.scanners.start(meta) : undefined,
      size: 0,
    };
    this.mode = 'data';
    this.write(R.go);
  }

  private dataBytes(chunk: Buffer): void {
    const d = this.msg?.data;
    if (!d) return;
    const out = d.framer.push(chunk);
    for (const c of out.content) {
      d.size += c.length;
      d.spool.write(c);
      if (d.size <= this.cfg.maxMessageSize) d.scan?.write(c);
      if (!d.headers.done) {
        const block = d.headers.push(c);
        if (block) this.headersDone(block.headers);
      }
    }
    if (out.end) {
      this.mode = 'eom';
      if (out.rest && out.rest.length > 0) this.reader.push(out.rest);
      void this.pump();
      return;
    }
    // The spool file or a scanner lags behind the client: stop reading until they caught up (bounded memory).
    const backlog = d.spool.backlog + (d.scan?.backlog ?? 0);
    if (backlog > SCAN_BACKLOG_LIMIT && !this.waitingForSpool) {
      this.waitingForSpool = true;
      this.socket.pause();
      void Promise.all([d.spool.drained(), d.scan?.drained()]).then(() => {
        this.waitingForSpool = false;
        if (this.mode !== 'closed' && !this.busy) this.socket.resume();
      });
    }
  }

  private headersDone(headers: ReadonlyArray<readonly [string, string]>): void {
    const msg = this.msg!;
    for (const [name, value] of headers) msg.tx = reduceTransaction(msg.tx, { stage: 'header', name, value });
  }

  private async endOfData(): Promise<void> {
    const msg = this.msg;
    const d = msg?.data;
    if (!msg || !d) return;
    const finished = d.headers.finish();
    if (finished) this.headersDone(finished.headers);
    try {
      await d.spool.finish();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'spooling the message failed');
      this.write(R.local);
      return await this.resetMessage();
    }
    if (d.size > this.cfg.maxMessageSize) {
      this.write(R.tooBig);
      return await this.resetMessage();
    }
    msg.tx = reduceTransaction(msg.tx, { stage: 'eoh' });
    let v = await this.judge(msg, ['header', 'eoh']);
    let rewritten: { path: string; size: number } | undefined;
    if (d.scan) {
      if (v) d.scan.abort();
      else {
        const outcome = await d.scan.end();
        msg.tx = reduceTransaction(msg.tx, { stage: 'scan', results: outcome.results });
        rewritten = outcome.rewritten;
      }
    }
    msg.tx = reduceTransaction(msg.tx, { stage: 'eom', size: d.size });
    if (!v) v = await this.judge(msg, ['eom']);
    const decision = v ?? msg.decided;
    const logFields = {
      msg: msg.tx.session.id,
      client: msg.tx.session.client.ip,
      rcpts: msg.recipients.length,
      size: d.size,
      rules: msg.rules,
    };
    if (decision && (decision.action === 'reject' || decision.action === 'tempfail')) {
      this.write(verdictReply(decision));
      this.log.info({ ...logFields, action: decision.action }, 'filter message refused');
      return await this.finish();
    }
    if (decision?.action === 'discard') {
      this.write(R.discarded);
      this.log.info({ ...logFields, action: 'discard' }, 'filter message discarded');
      return await this.finish();
    }
    if (decision?.action === 'quarantine') {
      const reason = decision.reason ?? 'quarantined by policy';
      const sink = this.deps.quarantine;
      if (this.cfg.quarantine || sink) {
        try {
          // The copy kept is the message as it would have gone on: the filter command's rewrite, the rules' edits.
          const source = rewritten ? createReadStream(rewritten.path, { highWaterMark: 64 * 1024 }) : d.spool.open();
          const content = pipeline(source, new HeaderRewriter(msg.mutations), () => undefined);
          if (this.cfg.quarantine) {
            await this.cfg.quarantine(content, { sessionId: msg.tx.session.id, client: msg.tx.session.client.ip, sender: msg.sender, recipients: msg.recipients, reason });
          } else {
            const meta = quarantineMetaFromTransaction(msg.tx, reason, decision.hits[decision.hits.length - 1]?.rule);
            await sink!.add({ ...meta, sender: msg.sender, recipients: msg.recipients }, content);
          }
          this.write(R.quarantined);
          this.log.info({ ...logFields, action: 'quarantine' }, 'filter message quarantined');
        } catch (err) {
          this.log.error({ ...logFields, err: (err as Error).message }, 'quarantine failed; deferring the message');
          this.write(R.local);
        }
      } else {
        this.log.error({ ...logFields }, 'quarantine verdict but no quarantine store is configured; deferring the message (it stays in Postfix\'s queue)');
        this.write(R.noQuarantine);
      }
      return await this.finish();
    }
    // continue / accept: send it on and answer with the next hop's answer.
    let reply: ParsedReply;
    try {
      const nh = this.nextHop.client;
      if (!nh?.usable || !msg.nextHopOpen) throw new NextHopError('next hop connection lost');
      const content = rewritten ? createReadStream(rewritten.path, { highWaterMark: 64 * 1024 }) : d.spool.open();
      reply = await nh.data(content, [new HeaderRewriter(msg.mutations)]);
      msg.nextHopOpen = false;
    } catch (err) {
      this.nextHopFailed(err);
      this.log.info({ ...logFields, action: 'tempfail' }, 'filter message deferred: next hop failed');
      return await this.finish();
    }
    this.write(reply.raw);
    this.log.info({ ...logFields, action: decision?.action ?? 'continue', nextHop: reply.code }, 'filter message passed on');
    await this.finish();
  }

  private async finish(): Promise<void> {
    this.messages++;
    await this.resetMessage();
    // XFORWARD attributes hold for one transaction only.
    this.xfwd = undefined;
  }

  private refuse(msg: Message, v: Verdict, _at: string): void {
    this.log.info({ msg: msg.tx.session.id, client: msg.tx.session.client.ip, action: v.action, rules: msg.rules }, 'filter transaction refused');
    this.write(verdictReply(v));
  }

  private nextHopFailed(err: unknown): void {
    this.log.warn({ err: (err as Error).message }, 'next hop failed; answering 451');
    this.nextHop.client?.destroy();
    this.write(R.nextHopDown);
    const msg = this.msg;
    if (msg) msg.nextHopOpen = false;
  }

  private async abortMessage(): Promise<void> {
    const msg = this.msg;
    this.msg = undefined;
    if (!msg) return;
    msg.data?.scan?.abort();
    await msg.data?.spool.dispose();
  }

  /** Ends the message in progress here and at the next hop (RSET, never a final dot). */
  private async resetMessage(): Promise<void> {
    const msg = this.msg;
    if (this.mode === 'data' || this.mode === 'eom') this.mode = 'command';
    await this.abortMessage();
    if (msg?.nextHopOpen) {
      const nh = this.nextHop.client;
      try {
        if (nh?.usable) {
          const r = await nh.command('RSET');
          if (r.code !== 250) nh.destroy();
        }
      } catch {
        nh?.destroy();
      }
    }
  }
}
