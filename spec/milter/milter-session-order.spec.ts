/**
 * Property: whatever order valid commands arrive in (Postfix's order, or an MTA that skips or repeats steps),
 * pipelined in one write, the session sends exactly one reply per replied-to command and nothing else, and the
 * connection stays usable.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { RuleStage } from '../../lib/core/stage.js';
import type { Verdict, VerdictAction } from '../../lib/core/verdict.js';
import type { Door } from '../../lib/daemon/door.js';
import type { MilterCommand } from '../../lib/milter/milter-codec.js';
import { Proto } from '../../lib/milter/milter-constants.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { MilterTestClient, POSTFIX_OPTNEG, scriptedPolicy, testDeps } from '../helpers/milter-client.js';
import { freePort } from '../helpers/ports.js';

const ALL: RuleStage[] = ['connect', 'helo', 'mail', 'rcpt', 'data', 'header', 'eoh', 'eom'];
/**
 * With a rule at every stage these get exactly one reply; macro and abort get none, and body chunks none either
 * (no scanners: negotiated with NR_BODY; checked against the OPTNEG answer below).
 */
const REPLIED = new Set<MilterCommand['type']>(['connect', 'helo', 'mail', 'rcpt', 'data', 'header', 'eoh', 'eob']);

const command: fc.Arbitrary<MilterCommand> = fc.oneof(
  fc.constant<MilterCommand>({ type: 'connect', hostname: 'h', family: 'inet', port: 25, address: '192.0.2.1' }),
  fc.constant<MilterCommand>({ type: 'helo', name: 'h' }),
  fc.constant<MilterCommand>({ type: 'mail', args: ['<a@b>'] }),
  fc.constant<MilterCommand>({ type: 'rcpt', args: ['<c@d>'] }),
  fc.constant<MilterCommand>({ type: 'data' }),
  fc.constant<MilterCommand>({ type: 'header', name: 'X', value: ' y' }),
  fc.constant<MilterCommand>({ type: 'eoh' }),
  fc.constant<MilterCommand>({ type: 'body', chunk: Buffer.from('b\r\n') }),
  fc.constant<MilterCommand>({ type: 'eob', chunk: Buffer.alloc(0) }),
  fc.constant<MilterCommand>({ type: 'abort' }),
  fc.constantFrom<MilterCommand>({ type: 'macro', stage: 'M', macros: [['i', 'Q']] }, { type: 'macro', stage: 'L', macros: [] }),
);

const actions = fc.constantFrom<VerdictAction>('continue', 'continue', 'continue', 'accept', 'reject', 'tempfail', 'discard', 'quarantine');
const verdicts = fc.record(Object.fromEntries(ALL.map((s) => [s, actions])) as Record<RuleStage, fc.Arbitrary<VerdictAction>>, { requiredKeys: [] });

describe('milter/milter-session command order (property)', function () {
  this.timeout(60_000);
  let door: Door | undefined;
  let port = 0;
  /** Verdicts for the current run, by stage (the door's policy reads it at evaluation time). */
  let plan: Partial<Record<RuleStage, VerdictAction>> = {};

  before(async () => {
    port = await freePort();
    const policy = scriptedPolicy(ALL, (stage): Verdict | undefined => {
      const action = plan[stage];
      if (action === undefined || action === 'continue') return undefined;
      return { action, mutations: [{ kind: 'add', name: 'X-Plan', value: stage }], effects: [], hits: [], ...(action === 'quarantine' ? { reason: 'q' } : {}) };
    });
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(policy));
    await door.start();
  });
  after(async () => {
    await door?.stop(100);
  });

  it('any sequence of valid commands, under any verdicts, gets exactly one final reply per replied-to command', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 30 }), verdicts, async (cmds, p) => {
        plan = p;
        const c = await MilterTestClient.open({ port });
        try {
          c.send(POSTFIX_OPTNEG);
          const o = await c.reply();
          assert.equal(o.type, 'optneg');
          if (o.type === 'optneg') assert.equal(o.protocol & (Proto.NR_CONN | Proto.NR_HELO | Proto.NR_MAIL | Proto.NR_RCPT | Proto.NR_DATA | Proto.NR_HDR | Proto.NR_EOH | Proto.NR_BODY), Proto.NR_BODY);
          c.send(...cmds);
          const expected = cmds.filter((x) => REPLIED.has(x.type)).length;
          for (let i = 0; i < expected; i++) {
            // Edits and QUARANTINE may precede a final reply (only at end of message); exactly one final reply each.
            const rs = await c.untilFinal(2000);
            for (const r of rs.slice(0, -1)) assert.ok(['addheader', 'chgheader', 'insheader', 'quarantine'].includes(r.type), `unexpected ${r.type}`);
          }
          await c.nothingFor(20);
          // Still in sync: one more replied command gets exactly one final reply.
          c.send({ type: 'abort' }, { type: 'mail', args: ['<x@y>'] });
          assert.equal((await c.untilFinal(2000)).length, 1);
          await c.nothingFor(10);
        } finally {
          c.close();
        }
      }),
      { numRuns: 120 },
    );
    assert.equal(door!.activeSessions >= 0, true);
  });
});
