/**
 * One policy connection's state: turns each Postfix policy request into the stage events the other doors produce,
 * asks the engine, and picks the one action to answer.
 *
 * Postfix asks at one protocol_state per request (the restriction list that holds check_policy_service). To make a
 * rule mean the same here as behind the milter or the interceptor, a request runs every rule stage up to its
 * protocol_state, in SMTP order, stopping at the first verdict that decides:
 *
 *   CONNECT          connect
 *   EHLO / HELO      connect helo
 *   MAIL             connect helo auth mail
 *   RCPT             connect helo auth mail rcpt
 *   DATA             connect helo auth mail [rcpt] data
 *   END-OF-MESSAGE   connect helo auth mail [rcpt] data eom
 *   VRFY / ETRN      connect helo auth           (no message stage)
 *
 * Stages run once per message: Postfix's `instance` attribute is the same for every request of one message on one
 * connection, so the stages an earlier request of the same instance already ran are not run again (their effects,
 * such as rate counts and locks, happen once), and a decision they made is repeated. The rcpt stage runs once per
 * RCPT request (per recipient); at DATA/END-OF-MESSAGE it runs only if no RCPT request ran it and Postfix names the
 * single recipient. helo runs only when Postfix knows a HELO name, auth only with a SASL login.
 * Header and eoh rules are not run: the policy protocol carries no headers (use the milter or filter door).
 *
 * Header mutations: the protocol allows one action per answer, so mutations are queued per message and each answer
 * that would otherwise be DUNNO carries the next one as `PREPEND name: value` (also on later requests of the same
 * message). Postfix puts PREPENDed headers on top. At END-OF-MESSAGE PREPEND is not allowed; what is still queued
 * then is logged and dropped. "change" mutations (change/delete a header) cannot be expressed and are dropped.
 */
import type { EffectRunner } from '../core/effects.js';
import type { Logger } from '../core/logger.js';
import type { PolicyPort } from '../core/policy-port.js';
import type { RuleStage, StageEvent } from '../core/stage.js';
import { acceptRecipient, reduceTransaction, startTransaction, type Transaction } from '../core/transaction.js';
import type { HeaderMutation, Verdict } from '../core/verdict.js';
import type { PolicyAttributes } from './policy-codec.js';
import { POLICY_ACTION, prependAction, verdictAction, type AcceptAction } from './policy-action.js';

/** Postfix protocol_state values (SMTPD_POLICY_README). */
export const POLICY_STATE = {
  CONNECT: 'CONNECT',
  EHLO: 'EHLO',
  HELO: 'HELO',
  MAIL: 'MAIL',
  RCPT: 'RCPT',
  DATA: 'DATA',
  END_OF_MESSAGE: 'END-OF-MESSAGE',
  VRFY: 'VRFY',
  ETRN: 'ETRN',
} as const;

const SESSION: readonly RuleStage[] = ['connect', 'helo', 'auth'];
const STAGES_FOR_STATE: Readonly<Record<string, readonly RuleStage[]>> = {
  [POLICY_STATE.CONNECT]: ['connect'],
  [POLICY_STATE.EHLO]: ['connect', 'helo'],
  [POLICY_STATE.HELO]: ['connect', 'helo'],
  [POLICY_STATE.MAIL]: [...SESSION, 'mail'],
  [POLICY_STATE.RCPT]: [...SESSION, 'mail', 'rcpt'],
  [POLICY_STATE.DATA]: [...SESSION, 'mail', 'rcpt', 'data'],
  [POLICY_STATE.END_OF_MESSAGE]: [...SESSION, 'mail', 'rcpt', 'data', 'eom'],
  [POLICY_STATE.VRFY]: SESSION,
  [POLICY_STATE.ETRN]: SESSION,
};

/** What a session needs from the door; read afresh when a new message (instance) starts, so reloads apply. */
export interface PolicySessionDeps {
  readonly policy: PolicyPort;
  readonly effects: EffectRunner;
  readonly logger: Logger;
}

export interface PolicyAnswer {
  readonly action: string;
  /** The verdict that decided, if any. */
  readonly verdict?: Verdict;
  readonly stagesRun: readonly RuleStage[];
}

interface MessageState {
  readonly instance: string;
  readonly deps: PolicySessionDeps;
  tx: Transaction;
  readonly done: Set<RuleStage>;
  /** A decision made at a message- or session-level stage: repeated for every later request of the message. */
  decided?: Verdict;
  readonly pending: Array<readonly [string, string]>;
}

let sequence = 0;

function num(v: string | undefined): number | undefined {
  return v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : undefined;
}

/** Builds the connect event from a request's attributes. */
export function connectEvent(a: PolicyAttributes): Extract<StageEvent, { stage: 'connect' }> {
  const server = a.get('server_address');
  const serverPort = num(a.get('server_port'));
  const name = a.get('client_name');
  return {
    stage: 'connect',
    door: 'policy',
    client: { ip: a.get('client_address') ?? '', port: num(a.get('client_port')) ?? 0 },
    ...(name ? { clientName: name } : {}),
    ...(server ? { destination: { ip: server, port: serverPort ?? 0 } } : {}),
    destinationSource: 'policy',
  };
}

export class PolicySession {
  private msg: MessageState | undefined;

  constructor(
    private readonly currentDeps: () => PolicySessionDeps,
    private readonly acceptAction: AcceptAction,
    private readonly now: () => number = Date.now,
  ) {}

  /** Answers one request. Rejects only on an internal failure (the caller closes without answering). */
  async handle(a: PolicyAttributes): Promise<PolicyAnswer> {
    const state = (a.get('protocol_state') ?? '').toUpperCase();
    const stages = STAGES_FOR_STATE[state];
    const request = a.get('request');
    if (stages === undefined || (request !== undefined && request !== 'smtpd_access_policy')) {
      this.currentDeps().logger.warn({ protocolState: state.slice(0, 40), request: request?.slice(0, 40) }, 'policy request with unknown protocol_state or request type; answering DUNNO');
      return { action: POLICY_ACTION.DUNNO, stagesRun: [] };
    }
    const msg = this.messageFor(a);
    const ran: RuleStage[] = [];
    let verdict: Verdict | undefined = msg.decided;
    if (verdict === undefined) {
      for (const stage of stages) {
        const event = this.eventFor(stage, a, msg, state);
        if (event === undefined) continue;
        if (stage !== 'connect') msg.tx = reduceTransaction(msg.tx, event);
        // connect: the tls event (if any) was applied when the transaction started.
        msg.done.add(stage);
        ran.push(stage);
        const v = await this.evaluate(msg, stage);
        if (v.action === 'continue') {
          if (stage === 'rcpt') msg.tx = acceptRecipient(msg.tx);
          continue;
        }
        if (stage !== 'rcpt') msg.decided = v;
        verdict = v;
        break;
      }
    }
    let action = verdict ? verdictAction(verdict, this.acceptAction) : POLICY_ACTION.DUNNO;
    if (action === POLICY_ACTION.DUNNO && msg.pending.length > 0) {
      if (state === POLICY_STATE.END_OF_MESSAGE) {
        msg.deps.logger.warn({ instance: msg.instance, dropped: msg.pending.map(([n]) => n) }, 'header mutations left at END-OF-MESSAGE cannot be sent to Postfix (PREPEND is not allowed there); dropped');
        msg.pending.length = 0;
      } else {
        const next = msg.pending.shift()!;
        action = prependAction(next[0], next[1]) ?? POLICY_ACTION.DUNNO;
      }
    }
    const log = msg.deps.logger;
    const fields = {
      instance: msg.instance,
      protocolState: state,
      client: msg.tx.session.client.ip,
      queueId: a.get('queue_id') || undefined,
      stages: ran,
      action,
      rules: verdict?.hits.map((h) => h.rule) ?? [],
    };
    if (verdict !== undefined && verdict.action !== 'continue') log.info(fields, 'policy decision');
    else log.debug(fields, 'policy request');
    return { action, ...(verdict ? { verdict } : {}), stagesRun: ran };
  }

  private messageFor(a: PolicyAttributes): MessageState {
    const instance = a.get('instance') ?? '';
    if (this.msg !== undefined && instance !== '' && this.msg.instance === instance) return this.msg;
    const deps = this.currentDeps();
    let tx = startTransaction(connectEvent(a), `policy-${instance || `anon${++sequence}`}`, this.now());
    const tlsProto = a.get('encryption_protocol');
    if (tlsProto) {
      const cipher = a.get('encryption_cipher');
      tx = reduceTransaction(tx, { stage: 'tls', active: true, protocol: tlsProto, ...(cipher ? { cipher } : {}) });
    }
    this.msg = { instance, deps, tx, done: new Set(), pending: [] };
    return this.msg;
  }

  private eventFor(stage: RuleStage, a: PolicyAttributes, msg: MessageState, state: string): StageEvent | undefined {
    if (stage !== 'rcpt' && msg.done.has(stage)) return undefined;
    switch (stage) {
      case 'connect':
        return connectEvent(a);
      case 'helo': {
        const name = a.get('helo_name');
        return name ? { stage: 'helo', name, extended: (a.get('protocol_name') ?? '').toUpperCase() === 'ESMTP' } : undefined;
      }
      case 'auth': {
        const user = a.get('sasl_username');
        const mechanism = a.get('sasl_method');
        return user ? { stage: 'auth', user, ...(mechanism ? { mechanism } : {}) } : undefined;
      }
      case 'mail': {
        const size = num(a.get('size'));
        // At MAIL, size is the SIZE= parameter (0 when none); at END-OF-MESSAGE it is the real size.
        const params: Record<string, string> = size !== undefined && size > 0 && state === POLICY_STATE.MAIL ? { SIZE: String(size) } : {};
        return { stage: 'mail', address: a.get('sender') ?? '', params };
      }
      case 'rcpt': {
        const rcpt = a.get('recipient');
        if (!rcpt) return undefined;
        if (state !== POLICY_STATE.RCPT && msg.done.has('rcpt')) return undefined;
        return { stage: 'rcpt', address: rcpt };
      }
      case 'data':
        return { stage: 'data' };
      case 'eom': {
        const size = num(a.get('size'));
        return size !== undefined ? { stage: 'eom', size } : { stage: 'eom' };
      }
      default:
        return undefined;
    }
  }

  private async evaluate(msg: MessageState, stage: RuleStage): Promise<Verdict> {
    const { policy, effects } = msg.deps;
    const v = await policy.evaluate(stage, msg.tx);
    if (v.effects.length > 0) effects.run(v.effects, msg.tx);
    for (const m of v.mutations) this.queueMutation(msg, m);
    return v;
  }

  private queueMutation(msg: MessageState, m: HeaderMutation): void {
    if (m.kind === 'change') {
      msg.deps.logger.warn({ instance: msg.instance, header: m.name }, 'policy door cannot change or delete headers; mutation dropped');
      return;
    }
    msg.pending.push([m.name, m.value]);
  }
}
