/**
 * Option negotiation (SMFIC_OPTNEG, protocols.md §1.4/§1.5): ask the MTA only for the events the loaded rules and
 * scanners use, promise no reply (NR_*) where we never act and Postfix does not stall on it, and request the
 * macros we read.
 * Pure: the offer and our needs in, the answer out.
 */
import { ProtocolError } from '../core/errors.js';
import type { PolicyNeeds } from '../core/policy-port.js';
import type { MacroListRequest } from './milter-codec.js';
import { Action, MILTER_MIN_VERSION, MILTER_VERSION, MacroStage, Proto } from './milter-constants.js';

export interface MilterOffer {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
}

export interface Negotiated {
  readonly version: number;
  readonly actions: number;
  readonly protocol: number;
  readonly macroLists: readonly MacroListRequest[];
}

/**
 * Macros sluice reads, per SMFIM stage, and nothing else: Postfix looks each one up and sends its value before every
 * event of the stage (the end-of-header list before every header). Names Postfix does not know are left out by it.
 * A stage cannot be left empty: Postfix then falls back to main.cf's list for it (milter.c, MILTER_MACRO_EVAL), so
 * the message stages ask for the queue id, which main.cf's defaults send there anyway.
 *  - connect: the server's address (`destination` in rules), and the client's for unix-socket and unknown-family
 *    CONNECTs, which carry none;
 *  - HELO: the TLS facts (`tls` event);
 *  - MAIL: the AUTH facts (`auth` event), and the queue id where Postfix already has one (it opens the queue file at
 *    MAIL when `smtpd_delay_open_until_valid_rcpt = no`);
 *  - RCPT and later: the queue id, logged with each message.
 */
export const MACRO_REQUESTS: readonly MacroListRequest[] = Object.freeze([
  { stage: MacroStage.CONNECT, names: '{daemon_addr} {daemon_port} {client_addr} {client_port}' },
  { stage: MacroStage.HELO, names: '{tls_version} {cipher}' },
  { stage: MacroStage.ENVFROM, names: 'i {auth_type} {auth_authen}' },
  { stage: MacroStage.ENVRCPT, names: 'i' },
  { stage: MacroStage.DATA, names: 'i' },
  { stage: MacroStage.EOM, names: 'i' },
  { stage: MacroStage.EOH, names: 'i' },
]);

/** What the session needs from the MTA, derived from the policy and the scanner set. */
export interface MilterWants {
  readonly needs: PolicyNeeds;
  readonly scanners: boolean;
}

/**
 * True when rules read the message size, which counts the headers and the body. An eom rule alone does not need
 * it: the trace header, header edits by index, locks and quarantine are all decided without the content.
 */
export function readsSize(w: MilterWants): boolean {
  return w.needs.size ?? w.needs.stages.has('eom');
}

/** True when the message headers must be received at all: scanners and header rules read them, and the size. */
export function wantsHeaders(w: MilterWants): boolean {
  return w.scanners || w.needs.headers || w.needs.stages.has('header') || w.needs.stages.has('eoh') || readsSize(w);
}

/** True when body chunks must be received: scanners read them, and the size counts them. */
export function wantsBody(w: MilterWants): boolean {
  return w.scanners || readsSize(w);
}

export interface NegotiateOptions {
  /**
   * Leave CONNECT, HELO and MAIL unanswered even with rules: their verdicts are sent at RCPT (which is then always
   * answered), like Postfix's smtpd_delay_reject. Default false.
   */
  readonly delayReject?: boolean;
  /**
   * Also promise no reply (SMFIP_NR_*) for CONNECT/HELO/MAIL/RCPT when no rule is bound to them. Default false:
   * header, EOH and body events without rules are never answered; see the comment in negotiate().
   */
  readonly noReply?: boolean;
  /**
   * What the MTA writes without waiting for an answer never waits on our delayed ACK: a unix-domain socket (no
   * ACKs), or TCP with an ACK sent at once after every read we do not answer (prompt-ack.ts). Only then is NODATA
   * asked for: otherwise the flush of smtpd's last events and cleanup's first one follow each other unanswered and
   * meet Nagle (48 ms per message, measured over TCP).
   */
  readonly promptAcks?: boolean;
}

export function negotiate(offer: MilterOffer, wants: MilterWants, opts: NegotiateOptions = {}): Negotiated | ProtocolError {
  if (offer.version < MILTER_MIN_VERSION) return new ProtocolError(`MTA offers milter protocol version ${offer.version}; at least ${MILTER_MIN_VERSION} is needed`, 'milter');
  const version = Math.min(offer.version, MILTER_VERSION);
  // libmilter: an MTA that offers nothing means the version-1/2 defaults.
  const offeredActions = offer.actions === 0 ? 0x0f : offer.actions;
  const offeredProto = offer.protocol === 0 ? 0x3f : offer.protocol;
  const can = (bit: number): boolean => (offeredProto & bit) !== 0;
  const stages = wants.needs.stages;

  let protocol = 0;
  const add = (bit: number): void => {
    if (can(bit)) protocol |= bit;
  };
  // Connect, HELO, MAIL and RCPT always come: they fill the transaction later rules read (DATA: see below).
  //
  // Which events may go unanswered (NR_*) is decided by how Postfix writes to the milter socket, measured against
  // Postfix 3.7 on loopback (bench/milter.bench.ts, latency scenarios): Postfix buffers the commands it expects no
  // reply to and flushes its buffer only when it waits for a reply -- and once more when smtpd hands the milter
  // connection to the cleanup server after DATA. Postfix does not set TCP_NODELAY, so when it flushes twice
  // without a reply from us in between, the second write waits (Nagle) for our ACK of the first, which the kernel
  // delays by ~40 ms: ~48 ms per message. Rule: every Postfix flush must be answered before the next one. So
  //  - DATA, when it comes, is always answered: it is smtpd's last event before the hand-off flush (NODATA,
  //    below, is asked for only over a unix socket: over TCP it stalls like the rest, measured);
  //  - headers, EOH and body chunks go unanswered (or are skipped) when no rule is bound to them: cleanup sends
  //    them in one buffered write with the end of message, which is answered;
  //  - CONNECT/HELO/MAIL/RCPT without rules go unanswered only with `noReply` (they ride along with the next
  //    answered smtpd command, at the latest DATA); by default they are answered.
  //  - with `delayReject`, CONNECT/HELO/MAIL are judged but answered at RCPT, which is then always answered.
  const nr = opts.noReply === true;
  const delay = opts.delayReject === true;
  if (delay) {
    add(Proto.NR_CONN);
    add(Proto.NR_HELO);
    add(Proto.NR_MAIL);
  }
  if (nr) {
    if (!stages.has('connect')) add(Proto.NR_CONN);
    if (!stages.has('helo')) add(Proto.NR_HELO);
    // auth rules are judged at MAIL, where the auth macros arrive.
    if (!stages.has('mail') && !stages.has('auth')) add(Proto.NR_MAIL);
    if (!stages.has('rcpt') && !delay) add(Proto.NR_RCPT);
  }
  if (!stages.has('eoh')) {
    add(Proto.NOEOH);
    add(Proto.NR_EOH);
  }
  if (!wantsHeaders(wants)) {
    add(Proto.NOHDRS);
    add(Proto.NR_HDR);
  } else {
    if (!stages.has('header')) add(Proto.NR_HDR);
    // Exact header bytes (for scanners and for our own added headers): we add the leading space ourselves.
    add(Proto.HDR_LEADSPC);
  }
  if (!wantsBody(wants)) {
    add(Proto.NOBODY);
    add(Proto.NR_BODY);
  } else if (wants.scanners && can(Proto.SKIP)) {
    // Answer body chunks so we can send SKIP once a message outgrows what the scanners may take.
    protocol |= Proto.SKIP;
  } else {
    add(Proto.NR_BODY);
  }
  // DATA carries nothing a rule reads that the next event does not (the recipients are complete at RCPT). When no
  // DATA rule can refuse, and the message has to be looked at after DATA anyway, Postfix need not send DATA: its
  // rules run at the next event (a header, EOH, body or end of message), whose answer carries their verdict. One
  // round trip less per message. Without prompt ACKs it would cost a Nagle stall (see NegotiateOptions.promptAcks).
  const afterData = stages.has('data') || stages.has('eoh') || stages.has('eom') || wantsHeaders(wants) || wantsBody(wants);
  const refuses = wants.needs.refuses;
  if (opts.promptAcks === true && afterData && refuses !== undefined && !refuses.has('data')) add(Proto.NODATA);
  add(Proto.NR_UNKN);
  add(Proto.NOUNKNOWN);

  const wantActions = Action.ADDHDRS | Action.CHGHDRS | Action.QUARANTINE | Action.SETSYMLIST;
  const actions = wantActions & offeredActions;
  const macroLists = version >= 6 && (offeredActions & Action.SETSYMLIST) !== 0 ? MACRO_REQUESTS : [];
  return { version, actions, protocol, macroLists };
}
