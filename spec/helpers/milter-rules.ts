/**
 * The policy the milter integration tests run behind the door.
 * Behaviour (the Lua script and the Postfix spec assert exactly this):
 *   connect: continue (a connect rule exists, so CONNECT is answered); reject 554 5.7.1 "Not welcome here" while
 *            options.rejectConnect() is true
 *   helo:    name "bad.helo.example" → reject 550 5.7.1 "Bad HELO"
 *   auth:    user "mallory" → reject 550 5.7.1 "Account mallory may not send"
 *   mail:    sender blocked@example.com → reject 550 5.7.1 "Sender blocked"; sender discard@example.com → discard; sender hold@example.com → quarantine "held for review"
 *   rcpt:    bad@example.net → reject 550 5.1.1 "No such user here"; later@example.net → tempfail 451 4.2.0
 *   data:    add header X-Sluice-Trace: "milter <hostname>" (the trace header)
 *   eom:     add X-Sluice: "auth=<user> client=<ip>"; change Subject #1 to "[checked] <subject>";
 *            delete every X-Remove-Me header; messages over 200000 bytes → reject 554 5.6.0
 */
import type { PolicyPort } from '../../lib/core/policy-port.js';
import type { Verdict } from '../../lib/core/verdict.js';
import { scriptedPolicy } from './milter-client.js';

const v = (x: Partial<Verdict> & Pick<Verdict, 'action'>): Verdict => ({ mutations: [], effects: [], hits: [], ...x });

export interface MilterTestPolicyOptions {
  readonly rejectConnect?: () => boolean;
}

export async function milterTestPolicy(options: MilterTestPolicyOptions = {}): Promise<PolicyPort> {
  return scriptedPolicy(['connect', 'helo', 'auth', 'mail', 'rcpt', 'data', 'eom'], (stage, tx) => {
    switch (stage) {
      case 'connect':
        if (options.rejectConnect?.()) return v({ action: 'reject', reply: { code: 554, enhanced: '5.7.1', lines: ['Not welcome here'] } });
        return undefined;
      case 'helo':
        if (tx.session.helo === 'bad.helo.example') return v({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['Bad HELO'] } });
        return undefined;
      case 'auth':
        if (tx.session.auth?.user === 'mallory') return v({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['Account mallory may not send'] } });
        return undefined;
      case 'mail':
        if (tx.envelope.mailFrom === 'blocked@example.com') return v({ action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['Sender blocked'] } });
        if (tx.envelope.mailFrom === 'discard@example.com') return v({ action: 'discard' });
        if (tx.envelope.mailFrom === 'hold@example.com') return v({ action: 'quarantine', reason: 'held for review' });
        return undefined;
      case 'rcpt':
        if (tx.envelope.rcpt === 'bad@example.net') return v({ action: 'reject', reply: { code: 550, enhanced: '5.1.1', lines: ['No such user here'] } });
        if (tx.envelope.rcpt === 'later@example.net') return v({ action: 'tempfail', reply: { code: 451, enhanced: '4.2.0', lines: ['Try later'] } });
        return undefined;
      case 'data':
        return v({ action: 'continue', mutations: [{ kind: 'add', name: 'X-Sluice-Trace', value: 'milter sluice.test' }] });
      case 'eom': {
        if (tx.message.size > 200_000) return v({ action: 'reject', reply: { code: 554, enhanced: '5.6.0', lines: ['Message too big for this test'] } });
        const subject = tx.message.headers.find(([n]) => n.toLowerCase() === 'subject');
        const removals = tx.message.headers.filter(([n]) => n.toLowerCase() === 'x-remove-me').map((_h, i) => ({ kind: 'change' as const, name: 'X-Remove-Me', index: i + 1, value: '' }));
        return v({
          action: 'continue',
          mutations: [
            { kind: 'add', name: 'X-Sluice', value: `auth=${tx.session.auth?.user ?? 'none'} client=${tx.session.client.ip}` },
            ...(subject ? [{ kind: 'change' as const, name: 'Subject', index: 1, value: `[checked] ${subject[1]}` }] : []),
            ...removals,
          ],
        });
      }
      default:
        return undefined;
    }
  }, { headers: true });
}
