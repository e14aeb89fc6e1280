import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon } from '../../lib/daemon/daemon.js';
import { builtinDoors, milterListen } from '../../lib/daemon/door-wiring.js';
import { makeTempDir } from '../helpers/temp-dir.js';

/** Sends one policy-delegation request and returns the raw answer. */
function policyRequest(port: number, attrs: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(attrs + '\n'));
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.endsWith('\n\n')) {
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', reject);
    setTimeout(() => reject(new Error('no answer: ' + JSON.stringify(buf))), 5000).unref();
  });
}

/** The first line a server sends. */
function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        s.destroy();
        resolve(buf.slice(0, i).trimEnd());
      }
    });
    s.on('error', reject);
  });
}

describe('daemon door wiring (every built-in door from the configuration)', function () {
  this.timeout(15000);
  let tmp: { path: string; remove: () => void };
  let daemon: Daemon | undefined;
  beforeEach(() => (tmp = makeTempDir()));
  afterEach(async () => {
    await daemon?.stop(0);
    daemon = undefined;
    tmp.remove();
  });

  it('renders milter listen specs', () => {
    assert.equal(milterListen({ kind: 'tcp', host: '127.0.0.1', port: 10027 }), 'inet:10027@127.0.0.1');
    assert.equal(milterListen({ kind: 'unix', path: '/run/m.sock' }), 'unix:/run/m.sock');
  });

  it('starts intercept, milter, filter and policyd, and each one answers', async () => {
    const file = join(tmp.path, 'sluice.yaml');
    writeFileSync(
      file,
      `hostname: gw.test
locks: { store: memory }
spf: { enabled: false }
intercept:
  - { listen: "127.0.0.1:0", upstream: "127.0.0.1:9" }
milter: { listen: unix:milter.sock }
filter: { listen: "127.0.0.1:0", next_hop: "127.0.0.1:9" }
policyd: { listen: "127.0.0.1:0" }
`,
    );
    const logs: string[] = [];
    daemon = await Daemon.start({ configPath: file, registry: builtinDoors(), logWrite: (l) => logs.push(l) });
    const doors = daemon.runningDoors;
    assert.deepEqual([...doors.keys()], ['intercept:intercept', 'milter', 'filter', 'policyd']);
    const port = (key: string): number => Number(/:(\d+)$/.exec(doors.get(key)?.addresses[0] ?? '')?.[1]);

    const answer = await policyRequest(port('policyd'), 'request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.7\nclient_name=unknown\nhelo_name=client.test\nsender=a@b.test\nrecipient=c@d.test\n');
    assert.equal(answer, 'action=DUNNO\n\n');
    // The filter door speaks only once its next hop answered; with none it says so, under our hostname.
    assert.equal(await greeting(port('filter')), '421 4.4.1 gw.test Next hop unavailable, try again later');
    assert.ok(existsSync(join(tmp.path, 'milter.sock')), 'milter socket created');
    assert.equal(logs.filter((l) => / INFO  door listening /.test(l)).length, 4);
  });
});
