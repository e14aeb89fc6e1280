/**
 * Bounded stress: 10,000 connect/QUIT cycles through the intercept door to smtp-sink (100 at a time), then the
 * door must hold no session, and memory must not have grown with the count.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { requirePeer } from '../helpers/ci-guard.js';
import { startSmtpSink, smtpSinkAvailable, type SmtpSink } from '../helpers/smtp-sink.js';
import { realPolicy, startInterceptDoor, until, type InterceptHarness } from '../helpers/intercept-harness.js';

const RULES = `rule nat at data: => add header "X-NAT-Received" "from [{client.ip}]"\n`;

function cycle(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    let quitSent = false;
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`cycle timed out: ${JSON.stringify(got)}`));
    }, 10_000);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (!quitSent && got.includes('\r\n')) {
        quitSent = true;
        s.write('QUIT\r\n');
      }
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
  });
}

describe('intercept stress: 10,000 connect/QUIT cycles', function () {
  this.timeout(60_000);
  let sink: SmtpSink;
  let h: InterceptHarness;

  before(async function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
    sink = await startSmtpSink();
    h = await startInterceptDoor({ upstreamPort: sink.port, policy: (locks) => realPolicy(RULES, locks), limits: { sessionsPerClient: 1000 } });
  });

  after(async () => {
    await h?.stop();
    await sink?.stop();
  });

  it('every cycle gets the sink greeting and 221; no session is left and memory stays flat', async () => {
    const total = 10_000;
    const parallel = 100;
    let done = 0;
    let bad = 0;
    let sample = '';
    const t0 = Date.now();
    global.gc?.();
    let rssAfterWarmup = 0;
    const worker = async (): Promise<void> => {
      while (done < total) {
        done++;
        const got = await cycle(h.port);
        if (!/^220 sink\.test ESMTP.*\r\n221 /s.test(got)) {
          bad++;
          sample ||= got;
        }
        if (done === 1000) rssAfterWarmup = process.memoryUsage().rss;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(bad, 0, `bad transcript, e.g. ${JSON.stringify(sample)}`);
    await until(() => h.door.activeSessions === 0, 10_000, 'sessions to close');
    const growth = process.memoryUsage().rss - rssAfterWarmup;
    assert.ok(growth < 150 * 1024 * 1024, `RSS grew by ${Math.round(growth / 1048576)} MB over 9,000 sessions`);
    assert.ok(seconds < 45, `took ${seconds}s`);
    assert.equal(h.events('CLOSE').length, total);
  });
});
