/**
 * Property: whatever a client sends to the policy-delegation port (requests with odd, missing, repeated or huge
 * attributes, CRLF or LF, garbage, cut at any point, pipelined), the door only ever answers with whole
 * `action=...` blocks (no CR, LF or NUL inside an action), never more answers than requests, ends every connection,
 * and still serves the next one. Real rules, PREPEND included.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import fc from 'fast-check';
import type { Door } from '../../lib/daemon/door.js';
import { createPolicyDoor } from '../../lib/milter/policy-door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { realPolicy, until } from '../helpers/intercept-harness.js';
import { doorDeps, lockStoreIn } from '../helpers/postfix-door-deps.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RULES = [
  'rule trap at rcpt: rcpt ~ /^trap@/ => reject 550 5.7.1 "No {rcpt}"',
  'rule spam at mail: sender ~ /^spam@/ => tempfail 451 4.7.1 "Later, {sender}"',
  'rule tag at data: => add header "X-Policy-Fuzz" "{client.ip} {helo}"',
  '',
].join('\n');

const NAME = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('request', 'protocol_state', 'protocol_name', 'client_address', 'client_name', 'helo_name', 'sender', 'recipient', 'size', 'sasl_username', 'instance') },
  { weight: 1, arbitrary: fc.constantFrom('unknown_attr', '', 'x'.repeat(300), 'Recipient') },
);
const VALUE = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('smtpd_access_policy', 'RCPT', 'DATA', 'END-OF-MESSAGE', 'MAIL', 'CONNECT', 'ESMTP', '192.0.2.7', '2001:db8::7', 'not-an-ip', 'trap@d.example', 'spam@x.example', 'a@b.example', '', '0', '99999999999999999999', 'a=b=c', 'x\r', '\u00e9') },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map((s) => s.replace(/\n/g, ' ')) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 80_000 }).map((n) => 'v'.repeat(n)) },
);
const EOL = fc.oneof({ weight: 5, arbitrary: fc.constant('\n') }, { weight: 1, arbitrary: fc.constant('\r\n') });

/** A request block: attribute lines, then the empty line (the same line ending throughout, as a client would). */
const REQUEST = fc.tuple(fc.array(fc.tuple(NAME, VALUE), { maxLength: 12 }), EOL, fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) })).map(([attrs, eol, base]) => {
  const all: Array<[string, string]> = base ? [['request', 'smtpd_access_policy'], ['protocol_state', 'RCPT'], ['client_address', '192.0.2.9'], ...attrs] : attrs;
  return all.map(([k, v]) => `${k}=${v}${eol}`).join('') + eol;
});
const GARBAGE = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('latin1'));

const SESSION = fc.record({
  parts: fc.array(fc.oneof({ weight: 8, arbitrary: REQUEST }, { weight: 1, arbitrary: GARBAGE }), { minLength: 1, maxLength: 6 }),
  cuts: fc.array(fc.nat(), { maxLength: 5 }),
});

const ANSWER = /^action=[^\r\n\0]{1,2000}\n\n/;

describe('policy door: arbitrary requests (property)', function () {
  this.timeout(120_000);
  let door: Door | undefined;
  let locks: LockStore | undefined;
  let temp: ReturnType<typeof makeTempDir> | undefined;
  let port = 0;

  before(async () => {
    temp = makeTempDir('sluice-policy-fuzz-');
    locks = lockStoreIn(temp.path);
    const store = locks;
    door = createPolicyDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 } }, doorDeps({ policy: realPolicy(RULES, store), locks: store }));
    await door.start();
    port = Number(door.addresses[0]!.split(':').pop());
  });
  after(async () => {
    await door?.stop(100);
    await locks?.close();
    temp?.remove();
  });

  /** Sends `text` cut at `cuts`, half-closes, and returns everything received once the door closed. */
  async function exchange(text: string, cuts: readonly number[]): Promise<string> {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    let got = '';
    socket.on('data', (b: Buffer) => (got += b.toString('latin1')));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await new Promise<void>((res, rej) => {
      socket.once('connect', res);
      socket.once('error', rej);
    });
    const bytes = Buffer.from(text, 'latin1');
    const at = [...new Set(cuts.map((n) => n % (bytes.length + 1)))].sort((a, b) => a - b);
    let from = 0;
    for (const n of [...at, bytes.length]) {
      if (n > from && !socket.destroyed) socket.write(bytes.subarray(from, n));
      from = Math.max(from, n);
      await new Promise((r) => setImmediate(r));
    }
    socket.end();
    const ended = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    socket.destroy();
    assert.ok(ended, `the door kept the connection open after the client's end; received ${JSON.stringify(got.slice(-200))}`);
    return got;
  }

  it('answers only whole action blocks, never more than the requests, and ends every connection', async () => {
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(SESSION, async ({ parts, cuts }) => {
        const got = await exchange(parts.join(''), cuts);
        let rest = got;
        let answers = 0;
        while (rest.length > 0) {
          const m = ANSWER.exec(rest);
          assert.ok(m, `not a whole action block: ${JSON.stringify(rest.slice(0, 200))}`);
          rest = rest.slice(m[0].length);
          answers++;
        }
        assert.ok(answers <= parts.length, `${answers} answers to at most ${parts.length} requests`);
        answered += answers;
        await until(() => door!.activeSessions === 0, 5000, 'the door to end the connection');
      }),
      { numRuns: Number(process.env['FUZZ_RUNS'] ?? 150) },
    );
    const runs = Number(process.env['FUZZ_RUNS'] ?? 150);
    assert.ok(answered >= runs / 5, `only ${answered} answers in ${runs} runs: the property is vacuous`);
    // Still healthy.
    const ok = await exchange('request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nrecipient=trap@d.example\n\n', []);
    assert.equal(ok, 'action=550 5.7.1 No trap@d.example\n\n');
  });
});
