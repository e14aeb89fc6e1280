/**
 * STARTTLS through Postfix: Postfix sends ABORT and a second HELO carrying the TLS macros after the handshake;
 * the milter door turns {tls_version}/{cipher} into the transaction's TLS facts, which rules can read.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { testDeps } from '../helpers/milter-client.js';
import { milterTestEngine } from '../helpers/milter-rules.js';
import { freePort } from '../helpers/ports.js';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { swaks, swaksAvailable } from '../helpers/swaks.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const OPENSSL = '/usr/bin/openssl';

function selfSigned(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      OPENSSL,
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=mx.sluice.test'],
      { timeout: 30_000 },
      (err) => (err ? reject(err) : resolve()),
    );
  });
}

describe('integration/milter behind Postfix with STARTTLS', function () {
  this.timeout(60_000);
  let pf: PostfixInstance | undefined;
  let door: Door | undefined;
  const certs = makeTempDir('sluice-milter-tls-');

  before(async function () {
    requirePeer(this, postfixAvailable && swaksAvailable && existsSync(OPENSSL), 'postfix (root), swaks and openssl');
    chmodSync(certs.path, 0o755);
    await selfSigned(certs.path);
    const port = await freePort();
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(await milterTestEngine()));
    await door.start();
    pf = await startPostfix({
      snippets: ['milter'],
      ports: { 10030: port },
      main: {
        smtpd_tls_security_level: 'may',
        smtpd_tls_cert_file: join(certs.path, 'cert.pem'),
        smtpd_tls_key_file: join(certs.path, 'key.pem'),
        smtpd_tls_session_cache_database: '',
      },
      master: ['tlsmgr     unix  -       -       n       1000?   1       tlsmgr'],
    });
  });

  after(async () => {
    await pf?.stop();
    await door?.stop(500);
    certs.remove();
  });

  it('rules see the TLS protocol and cipher from the HELO macros after STARTTLS', async () => {
    const before = pf!.sink!.messages().length;
    const r = await swaks({ server: pf!.host, port: pf!.smtpPort, from: 'alice@example.com', to: 'bob@example.net', helo: 'client.example', extra: ['-tls'] });
    assert.equal(r.code, 0, r.transcript);
    const [m] = (await pf!.sink!.waitForMessages(before + 1)).slice(before);
    const tls = m?.headers.filter(([n]) => n === 'X-Sluice-TLS').map(([, v]) => v) ?? [];
    assert.equal(tls.length, 1, JSON.stringify(m?.headers));
    assert.match(tls[0] ?? '', /^TLSv1\.[23] \S+$/);
    assert.equal(m?.headers.filter(([n]) => n === 'X-Sluice-Trace').length, 1);
  });

  it('plain sessions carry no TLS header', async () => {
    const before = pf!.sink!.messages().length;
    const r = await swaks({ server: pf!.host, port: pf!.smtpPort, from: 'alice@example.com', to: 'bob@example.net', helo: 'client.example' });
    assert.equal(r.code, 0, r.transcript);
    const [m] = (await pf!.sink!.waitForMessages(before + 1)).slice(before);
    assert.equal(m?.headers.filter(([n]) => n === 'X-Sluice-TLS').length, 0);
  });
});
