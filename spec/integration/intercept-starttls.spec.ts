/**
 * STARTTLS through the intercept door with a real TLS-capable Postfix upstream and swaks:
 * `relay` turns the session into an opaque byte relay after the upstream's 220 (the message arrives, TLS is
 * end-to-end, no trace header can be added); `forbid` removes STARTTLS from EHLO and answers 502.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requirePeer } from '../helpers/ci-guard.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { smtpSinkAvailable } from '../helpers/smtp-sink.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { realPolicy, startInterceptDoor, until, type InterceptHarness } from '../helpers/intercept-harness.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const OPENSSL = '/usr/bin/openssl';
const RULES = 'rule nat at data: => add header "X-NAT-Received" "from [{client.ip}]"\n';

describe('intercept door: STARTTLS relay and forbid with a TLS Postfix upstream', function () {
  this.timeout(60_000);
  let pf: PostfixInstance;
  let certs: { path: string; remove: () => void };
  let h: InterceptHarness | undefined;

  before(async function () {
    requirePeer(this, postfixAvailable && smtpSinkAvailable, 'postfix + smtp-sink');
    requirePeer(this, swaksAvailable, 'swaks');
    requirePeer(this, existsSync(OPENSSL), 'openssl');
    certs = makeTempDir('sluice-tls-');
    const key = join(certs.path, 'key.pem');
    const cert = join(certs.path, 'cert.pem');
    execFileSync(OPENSSL, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=mx.sluice.test'], { stdio: 'ignore' });
    execFileSync('chmod', ['0644', key, cert]);
    execFileSync('chmod', ['0755', certs.path]);
    pf = await startPostfix({ main: { smtpd_tls_security_level: 'may', smtpd_tls_cert_file: cert, smtpd_tls_key_file: key }, master: ['tlsmgr unix - - n 1000? 1 tlsmgr'] });
  });

  after(async () => {
    await pf?.stop();
    certs?.remove();
  });

  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('relay: swaks --tls gets TLS end to end through sluice; the message is delivered without our header', async () => {
    h = await startInterceptDoor({ upstreamPort: pf.smtpPort, policy: (locks) => realPolicy(RULES, locks), options: { starttls: 'relay' } });
    const r = await swaks({ server: '127.0.0.1', port: h.port, to: 'tls@example.net', headers: [['Subject', 'over tls']], extra: ['--tls'] });
    assert.equal(r.code, 0, r.transcript + '\n' + pf.log().split('\n').filter((l) => /tls|TLS|warning|fatal|error/.test(l)).slice(-10).join('\n'));
    assert.match(r.transcript, /^<~  250 .*queued/m, 'the message went over TLS (swaks marks TLS lines with ~)');
    const sink = pf.sink!;
    const [m] = await sink.waitForMessages(1, 20_000);
    assert.equal(m!.headers.find(([n]) => n === 'Subject')?.[1], 'over tls');
    assert.ok(!m!.headers.some(([n]) => n === 'X-NAT-Received'), 'no header can be added inside TLS');
    await until(() => h!.events('STARTTLS').length === 1);
  });

  it('forbid: STARTTLS is not offered and answered 502; plain mail still gets the trace header', async () => {
    h = await startInterceptDoor({ upstreamPort: pf.smtpPort, policy: (locks) => realPolicy(RULES, locks), options: { starttls: 'forbid' } });
    const before = pf.sink!.messages().length;
    const t = await swaks({ server: '127.0.0.1', port: h.port, extra: ['--tls'] });
    assert.notEqual(t.code, 0);
    assert.ok(!t.serverLines.some((l) => /STARTTLS/.test(l)), t.transcript);
    const r = await swaks({ server: '127.0.0.1', port: h.port, to: 'plain@example.net' });
    assert.equal(r.code, 0, r.transcript);
    const msgs = await pf.sink!.waitForMessages(before + 1, 20_000);
    assert.equal(msgs.at(-1)!.headers.some(([n]) => n === 'X-NAT-Received'), true);
  });
});
