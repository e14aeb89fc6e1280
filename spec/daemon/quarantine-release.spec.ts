/**
 * releaseMessage (what `sluice quarantine release` sends with) against the fault-injecting SMTP server: the
 * message arrives dot-stuffed and intact, refused recipients are reported, and a next hop that goes away while
 * the message is being written ends the release with an error instead of leaving it waiting.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { releaseMessage } from '../../lib/daemon/quarantine-release.js';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';

describe('quarantine release over SMTP (fault server)', function () {
  this.timeout(30_000);
  let up: FaultUpstream | undefined;
  afterEach(async () => {
    await up?.close();
    up = undefined;
  });

  it('delivers the message dot-stuffed and intact', async () => {
    up = await startFaultUpstream({ replies: { RCPT: '250 2.1.5 Ok\r\n' } });
    const message = 'Subject: held\r\n\r\n.a line starting with a dot\r\nlast line\r\n';
    const r = await releaseMessage({ host: '127.0.0.1', port: up.port, helo: 'sluice.test', timeoutMs: 5000 }, 'a@example.org', ['b@example.net'], Readable.from([Buffer.from(message)]));
    assert.equal(r.delivered, true, r.reply);
    assert.deepEqual(r.accepted, ['b@example.net']);
    await up.waitClosed(1);
    assert.deepEqual(up.connections[0]!.messages, [message]);
    assert.ok(up.connections[0]!.raw.includes('\r\n..a line starting with a dot\r\n'), 'the leading dot is stuffed on the wire');
  });

  it('a next hop that resets while the release waits to write: an error, promptly', async () => {
    up = await startFaultUpstream({ slowData: { everyBytes: 256 * 1024, ms: 100 }, resetAfterDataBytes: 2 * 1024 * 1024 });
    const line = Buffer.from('a line of a large quarantined message, released to a next hop that reads slowly\r\n');
    const chunks = [Buffer.from('Subject: big\r\n\r\n'), ...Array.from({ length: Math.ceil((12 * 1024 * 1024) / line.length) }, () => line)];
    const t0 = Date.now();
    await assert.rejects(
      releaseMessage({ host: '127.0.0.1', port: up.port, helo: 'sluice.test', timeoutMs: 20_000 }, 'a@example.org', ['b@example.net'], Readable.from(chunks)),
      /closed|reset|ECONNRESET|EPIPE/i,
    );
    assert.ok(Date.now() - t0 < 15_000, 'it did not wait for the timeout');
  });
});
