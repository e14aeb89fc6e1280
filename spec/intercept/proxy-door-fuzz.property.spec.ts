/**
 * Property, for the intercept door in `proxy` mode (a trusted HAProxy in front): whatever arrives before the
 * session (a valid PROXY v1 or v2 header, one with a byte changed, a truncated one, garbage, nothing), split at
 * random points, followed or not by SMTP, and however the client leaves:
 *  - the upstream is contacted only after a complete, valid header (the listener's parse of the same bytes says
 *    so); an invalid or incomplete one never reaches it;
 *  - every line the client receives is a well-formed SMTP reply line;
 *  - the session ends and the door's session count returns to zero.
 * The listener's `upstream` override sends every session to a local fault upstream, whatever destination the
 * header names, so no traffic ever leaves loopback.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import type { Door } from '../../lib/daemon/door.js';
import { createInterceptDoor } from '../../lib/intercept/intercept-door.js';
import { parseProxyHeader, serializeProxyV1, serializeProxyV2 } from '../../lib/intercept/proxy-protocol.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';
import { realPolicy, until } from '../helpers/intercept-harness.js';
import { doorDeps, lockStoreIn } from '../helpers/postfix-door-deps.js';
import { freePort } from '../helpers/ports.js';
import { splitAtFractions } from '../helpers/split-bytes.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 150);
const HEADER_TIMEOUT_MS = 300;
const REPLY_LINE = /^[2-5]\d\d(?:[ -][^\r\n]*)?$/;

const port = fc.integer({ min: 0, max: 65535 });
const ipv6 = fc.ipV6().filter((s) => !s.includes('.'));
const tlv = fc.record({ type: fc.integer({ min: 0, max: 255 }).filter((t) => t !== 3), value: fc.uint8Array({ maxLength: 30 }) });

const VALID_HEADER = fc.oneof(
  fc.tuple(fc.ipV4(), fc.ipV4(), port, port).map(([a, b, p, q]) => serializeProxyV1({ family: 'tcp4', source: { ip: a, port: p }, destination: { ip: b, port: q } })),
  fc.tuple(ipv6, ipv6, port, port).map(([a, b, p, q]) => serializeProxyV1({ family: 'tcp6', source: { ip: a, port: p }, destination: { ip: b, port: q } })),
  fc.constant(serializeProxyV1({ family: 'unknown' })),
  fc.tuple(fc.boolean(), fc.ipV4(), fc.ipV4(), ipv6, ipv6, port, port, fc.array(tlv, { maxLength: 3 }), fc.boolean()).map(([six, a4, b4, a6, b6, p, q, tlvs, crc]) =>
    serializeProxyV2({ command: 'proxy', family: six ? 'tcp6' : 'tcp4', source: { ip: six ? a6 : a4, port: p }, destination: { ip: six ? b6 : b4, port: q }, tlvs }, crc),
  ),
  fc.constant(serializeProxyV2({ command: 'local', family: 'unspec' })),
);

/** What comes before the session: a valid header, damaged or not, or none at all. */
const HEAD = fc.oneof(
  { weight: 4, arbitrary: VALID_HEADER },
  { weight: 3, arbitrary: fc.tuple(VALID_HEADER, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([h, at, v]) => { const b = Buffer.from(h); b[at % b.length] = v; return b; }) },
  { weight: 2, arbitrary: fc.tuple(VALID_HEADER, fc.nat()).map(([h, n]) => h.subarray(0, n % h.length)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.from('EHLO early.test\r\n'), Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), Buffer.from('PROXY ' + 'x'.repeat(200) + '\r\n')) },
);

interface Attempt {
  readonly head: Buffer;
  readonly smtp: string;
  readonly cuts: readonly number[];
  readonly ending: 'end' | 'destroy' | 'wait';
}

const ATTEMPT: fc.Arbitrary<Attempt> = fc.record({
  head: HEAD,
  smtp: fc.constantFrom('', 'EHLO client.test\r\n', 'EHLO client.test\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n', 'QUIT\r\n'),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }),
  ending: fc.constantFrom<'end' | 'destroy' | 'wait'>('end', 'destroy', 'wait'),
});

/** Plays one connection; resolves with what the client received once the door closed it (or it left). */
async function play(doorPort: number, a: Attempt): Promise<string> {
  const socket: Socket = connect({ host: '127.0.0.1', port: doorPort });
  socket.on('error', () => undefined);
  let received = '';
  socket.on('data', (b: Buffer) => (received += b.toString('latin1')));
  const closed = new Promise<void>((res) => socket.once('close', () => res()));
  await new Promise<void>((res, rej) => {
    socket.once('connect', res);
    socket.once('error', rej);
  });
  for (const c of splitAtFractions(Buffer.concat([a.head, Buffer.from(a.smtp, 'latin1')]), a.cuts)) {
    if (socket.destroyed || c.length === 0) continue;
    socket.write(c);
    await new Promise((r) => setImmediate(r));
  }
  if (a.ending === 'destroy') socket.destroy();
  else if (a.ending === 'end') socket.end();
  // 'wait': the client stays until the door closes (header timeout, QUIT, or the door's own idle timeout).
  const outcome = await Promise.race([closed.then(() => 'closed' as const), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 8000))]);
  if (outcome === 'timeout' && a.ending === 'wait') {
    // A valid header and an unfinished session: the door waits for the client, as it should. Leave.
    socket.destroy();
  }
  return received;
}

describe('intercept door, proxy mode: arbitrary bytes before the session (property)', function () {
  this.timeout(300_000);
  let temp: ReturnType<typeof makeTempDir> | undefined;
  let locks: LockStore | undefined;
  let up: FaultUpstream | undefined;
  let door: Door | undefined;
  let doorPort = 0;

  before(async () => {
    temp = makeTempDir('sluice-proxy-fuzz-');
    locks = lockStoreIn(temp.path);
    up = await startFaultUpstream();
    doorPort = await freePort();
    const store = locks;
    door = createInterceptDoor(
      {
        listeners: [
          { listen: { ip: '127.0.0.1', port: doorPort }, mode: 'proxy', upstream: { ip: '127.0.0.1', port: up.port }, proxyTrusted: ['127.0.0.0/8'], proxyHeaderTimeoutMs: HEADER_TIMEOUT_MS },
        ],
        holdDir: temp.path,
      },
      doorDeps({ policy: realPolicy('rule trace at data: => add header "X-Fuzz-Trace" "seen"\n', store), locks: store, limits: { idleTimeout: 1000 } }),
    );
    await door.start();
  });
  after(async () => {
    await door?.stop(200);
    await up?.close();
    await locks?.close();
    temp?.remove();
  });

  it('contacts the upstream only after a valid header, answers only well-formed lines, and ends every session', async () => {
    const upstream = up!;
    let relayed = 0;
    await fc.assert(
      fc.asyncProperty(ATTEMPT, async (a) => {
        const before = upstream.connections.length;
        const received = await play(doorPort, a);
        await until(() => door!.activeSessions === 0, 5000, 'the door to end the session');
        // A connect the door began before the client left completes on the upstream's side a moment later:
        // let the upstream's count settle, so each run is charged with its own connections.
        for (let n = -1; n !== upstream.connections.length; ) {
          n = upstream.connections.length;
          await new Promise((r) => setTimeout(r, 30));
        }
        const parsed = parseProxyHeader(Buffer.concat([a.head, Buffer.from(a.smtp, 'latin1')]));
        const contacted = upstream.connections.length - before;
        if (parsed.kind !== 'header') assert.equal(contacted, 0, `the upstream was contacted after a ${parsed.kind} header: ${JSON.stringify(a.head.toString('latin1'))}`);
        assert.ok(contacted <= 1, `one upstream connection at most, saw ${contacted}`);
        relayed += contacted;
        const lines = received.split('\r\n');
        lines.pop();
        for (const l of lines) assert.match(l, REPLY_LINE, `malformed line to the client: ${JSON.stringify(l)}`);
        await until(() => upstream.connections.slice(before).every((c) => c.closed), 5000, 'the upstream connection to close');
      }),
      { numRuns: RUNS },
    );
    assert.ok(relayed >= RUNS / 10, `only ${relayed} of ${RUNS} sessions reached the upstream: the property is vacuous`);
  });
});
