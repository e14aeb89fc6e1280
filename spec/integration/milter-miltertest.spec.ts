/**
 * miltertest(8) (Debian `miltertest`, an MTA simulator built on libmilter's wire code) drives the milter door
 * through spec/fixtures/miltertest/*.lua: negotiation, macros, rejects, multi-message, end-of-message edits.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { milterTestEngine } from '../helpers/milter-rules.js';
import { testDeps } from '../helpers/milter-client.js';
import { fixturesDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const MILTERTEST = '/usr/bin/miltertest';

function miltertest(script: string, port: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(MILTERTEST, ['-s', script, '-D', `port=${port}`], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, out: String(stdout) + String(stderr) });
    });
  });
}

describe('integration/milter with miltertest', function () {
  this.timeout(30_000);
  let door: Door | undefined;
  let port = 0;

  before(async function () {
    requirePeer(this, existsSync(MILTERTEST), 'miltertest (Debian package miltertest)');
    port = await freePort();
    door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(await milterTestEngine()));
    await door.start();
  });

  after(async () => {
    await door?.stop(500);
  });

  it('passes negotiate-macros-eom.lua with the real engine (negotiation, macros, rejects, three messages, EOM headers)', async () => {
    const r = await miltertest(join(fixturesDir, 'miltertest', 'negotiate-macros-eom.lua'), port);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /ALL CHECKS PASSED/);
    assert.doesNotMatch(r.out, /FAILED/);
  });
});
