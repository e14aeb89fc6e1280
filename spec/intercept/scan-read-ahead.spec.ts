/**
 * Scan read-ahead: while scanners take a message, the intercept door reads the client ahead of a slow upstream,
 * within its budget, so the scanners have the whole message long before the upstream does. A recording scanner
 * (it only counts bytes) stands in for clamd: what is asserted is when the door fed it, not a verdict.
 */
import assert from 'node:assert/strict';
import { ReadAheadBudget } from '../../lib/intercept/read-ahead.js';
import { SCAN_BACKLOG_LIMIT, type ScanJob, type ScannerSet } from '../../lib/scanners/scanner.js';
import type { FaultUpstream } from '../helpers/fault-upstream.js';
import { startHoldDoor } from '../helpers/hold-door.js';
import { until } from '../helpers/intercept-harness.js';
import { useRelayFixture } from '../helpers/relay-fixture.js';

describe('ReadAheadBudget', () => {
  it('grants a claim within the per-session and the total bound, and keeps the old claim otherwise', () => {
    const b = new ReadAheadBudget(100, 150);
    let a = b.move(0, 80);
    assert.equal(a, 80);
    assert.equal(b.move(a, 120), 80, 'over the per-session bound: unchanged');
    let c = b.move(0, 80);
    assert.equal(c, 0, 'over the total: refused');
    c = b.move(0, 70);
    assert.equal(c, 70);
    assert.equal(b.claimed, 150);
    a = b.move(a, 10);
    assert.equal(a, 10, 'shrinking always succeeds');
    assert.equal(b.claimed, 80);
    a = b.release(a);
    c = b.release(c);
    assert.equal(b.claimed, 0);
  });
});

/**
 * A scanner that counts what the door fed it and, at its end, what the upstream had received. With `stalled`, it
 * takes nothing (its backlog is everything fed) until `release()`.
 */
function countingScanner(up: () => FaultUpstream, stalled = false): { set: ScannerSet; fed: () => number; upstreamAtEnd: () => number | undefined; release: () => void } {
  let fed = 0;
  let taken = 0;
  let upstreamAtEnd: number | undefined;
  let release: () => void = () => undefined;
  const released = stalled ? new Promise<void>((r) => (release = r)) : Promise.resolve();
  const set: ScannerSet = {
    enabled: true,
    start(): ScanJob {
      fed = 0;
      taken = 0;
      return {
        write: (chunk) => {
          fed += chunk.length;
          if (!stalled) taken = fed;
        },
        end: async () => {
          upstreamAtEnd = up().connections[0]?.partial.length ?? 0;
          return { results: { skipped: [], failed: {} } };
        },
        abort: () => undefined,
        get backlog() {
          return fed - taken;
        },
        drained: () => released.then(() => void (taken = fed)),
      };
    },
    close: async () => undefined,
  };
  return {
    set,
    fed: () => fed,
    upstreamAtEnd: () => upstreamAtEnd,
    release: () => {
      stalled = false;
      release();
    },
  };
}

describe('intercept scan read-ahead (slow fault upstream, raw client)', function () {
  this.timeout(30_000);
  const fx = useRelayFixture();
  const LINE = 'a line of a message that is large enough to need read-ahead, padded out to about 80 bytes\r\n';
  const BODY = LINE.repeat(Math.ceil((12 * 1024 * 1024) / LINE.length));

  /** A door in front of `upstreamPort` scanning with `scanner`, and a client it has answered DATA with 354. */
  async function clientAtData(upstreamPort: number, scanner: ReturnType<typeof countingScanner>, options: { scanReadAhead?: number } = {}) {
    const h = fx.door(await startHoldDoor({ upstreamPort, rules: 'rule ok at eom: => accept\n', scanners: scanner.set, options }));
    const c = await fx.client(h.port);
    await c.reply();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    assert.match(await c.cmd('DATA'), /^354 /);
    return c;
  }

  async function send(options: { scanReadAhead?: number }): Promise<{ fed: number; upstreamAtEnd: number; delivered: number; reply: string }> {
    // The next hop takes 256 KiB every 25 ms (about 10 MB/s): 12 MB take it over a second.
    const up = await fx.upstream({ slowData: { everyBytes: 256 * 1024, ms: 25 } });
    const scanner = countingScanner(() => up);
    const c = await clientAtData(up.port, scanner, options);
    c.write(`Subject: big\r\n\r\n${BODY}.\r\n`);
    const reply = await c.reply(20_000);
    await until(() => up.connections[0]?.messages.length === 1, 5000, 'the message at the upstream');
    return { fed: scanner.fed(), upstreamAtEnd: scanner.upstreamAtEnd() ?? -1, delivered: up.connections[0]!.messages[0]!.length, reply };
  }

  it('feeds the scanner the whole message while the slow upstream has less than half of it; the upstream still gets it all', async () => {
    const r = await send({});
    const size = `Subject: big\r\n\r\n${BODY}`.length;
    assert.equal(r.reply, '250 2.0.0 Ok: queued\r\n');
    assert.equal(r.fed, size, 'the scanner saw every byte');
    assert.equal(r.delivered, size, 'the upstream received every byte');
    assert.ok(r.upstreamAtEnd < size / 2, `the scan could end with ${r.upstreamAtEnd} of ${size} bytes at the upstream`);
  });

  it('a stalled scanner stops the door reading the client near SCAN_BACKLOG_LIMIT; released, the message completes', async () => {
    const up = await fx.upstream();
    const scanner = countingScanner(() => up, true);
    const c = await clientAtData(up.port, scanner);
    const message = `Subject: big\r\n\r\n${BODY}`;
    c.write(`${message}.\r\n`);
    await until(() => scanner.fed() > SCAN_BACKLOG_LIMIT, 10_000, 'the backlog limit reached');
    await new Promise((r) => setTimeout(r, 300));
    const fedWhileStalled = scanner.fed();
    assert.ok(fedWhileStalled < SCAN_BACKLOG_LIMIT + 1024 * 1024, `the door kept feeding a stalled scanner: ${fedWhileStalled} bytes`);
    assert.ok((up.connections[0]?.partial.length ?? 0) <= fedWhileStalled, 'the upstream got no more than the scanner');
    scanner.release();
    assert.equal(await c.reply(20_000), '250 2.0.0 Ok: queued\r\n');
    assert.equal(scanner.fed(), message.length);
    await until(() => up.connections[0]?.messages.length === 1, 5000, 'the message at the upstream');
    assert.equal(up.connections[0]!.messages[0]!.length, message.length);
  });

  it('scan_read_ahead 0: the scanner is fed at the upstream pace (the scan ends when most of the message is upstream)', async () => {
    const r = await send({ scanReadAhead: 0 });
    const size = `Subject: big\r\n\r\n${BODY}`.length;
    assert.equal(r.reply, '250 2.0.0 Ok: queued\r\n');
    assert.equal(r.fed, size);
    assert.equal(r.delivered, size);
    assert.ok(r.upstreamAtEnd > size / 2, `without read-ahead the scan ended with only ${r.upstreamAtEnd} of ${size} bytes upstream`);
  });
});
