import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon } from '../../lib/daemon/daemon.js';
import { parseConfig } from '../../lib/daemon/config-loader.js';
import { builtinDoors, interceptDoorOptions, milterListen } from '../../lib/daemon/door-wiring.js';
import { QuarantineStore } from '../../lib/daemon/quarantine-store.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { rawClient } from '../helpers/smtp-raw-client.js';
import { smtpSinkAvailable, startSmtpSink } from '../helpers/smtp-sink.js';
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
    // Logged once per intercept listener, by the door (with its name), not again by the listener itself.
    const started = logs.filter((l) => /intercept listener started/.test(l));
    assert.equal(started.length, 1, started.join(''));
    assert.match(started[0] ?? '', /door=intercept/);
  });

  it('maps hold_memory, hold_dir, proxy_header_timeout and max_pending onto the intercept door options', () => {
    const file = join(tmp.path, 'sluice.yaml');
    const config = parseConfig(
      `state_dir: state\nintercept:\n  - { name: a, listen: "127.0.0.1:0", mode: proxy, proxy_trusted: [127.0.0.1], hold_messages_up_to: 1MB, hold_memory: 4KB, hold_dir: ., proxy_header_timeout: 250ms, max_pending: 3 }\n  - { name: b, listen: "127.0.0.1:0", upstream: "127.0.0.1:9", hold_messages_up_to: 1MB }\n  - { name: c, listen: "127.0.0.1:0", upstream: "127.0.0.1:9", hold_dir: missing, hold_messages_up_to: 1MB }\n`,
      file,
    );
    const [a, b, c] = config.intercept;
    if (!a || !b || !c) throw new Error('three listeners expected');
    const oa = interceptDoorOptions(a, config);
    assert.equal(oa.holdMemory, 4096);
    assert.equal(oa.holdDir, tmp.path);
    assert.equal(oa.listeners[0]?.proxyHeaderTimeoutMs, 250);
    assert.equal(oa.listeners[0]?.maxPending, 3);
    const ob = interceptDoorOptions(b, config);
    assert.equal(ob.holdMemory, 64 * 1024);
    assert.equal(ob.holdDir, join(tmp.path, 'state', 'spool'));
    assert.equal(ob.listeners[0]?.proxyHeaderTimeoutMs, 5000);
    assert.equal(ob.listeners[0]?.maxPending, 1000);
    assert.throws(() => interceptDoorOptions(c, config), { message: `intercept listener "c": hold_dir: ${join(tmp.path, 'missing')} is not an existing directory` });
  });

  it('proxy_header_timeout and max_pending reach the running listener', async () => {
    const file = join(tmp.path, 'sluice.yaml');
    writeFileSync(
      file,
      `locks: { store: memory }\nspf: { enabled: false }\nintercept:\n  - { listen: "127.0.0.1:0", mode: proxy, proxy_trusted: [127.0.0.1], proxy_header_timeout: 300ms, max_pending: 1 }\n`,
    );
    daemon = await Daemon.start({ configPath: file, registry: builtinDoors(), logWrite: () => undefined });
    const port = Number(/:(\d+)$/.exec(daemon.runningDoors.get('intercept:intercept')?.addresses[0] ?? '')?.[1]);
    const closedAfter = (s: Socket): Promise<number> => {
      const t0 = Date.now();
      return new Promise((resolve) => s.on('close', () => resolve(Date.now() - t0)));
    };
    // The first connection sends no PROXY header: it holds the one pending slot, then times out after 300 ms.
    const first = connect(port, '127.0.0.1');
    first.on('error', () => undefined);
    const firstClosed = closedAfter(first);
    await new Promise((r) => first.on('connect', r));
    await new Promise((r) => setTimeout(r, 50));
    // The second finds no free slot (max_pending: 1) and is closed at once.
    const second = connect(port, '127.0.0.1');
    second.on('error', () => undefined);
    const secondMs = await closedAfter(second);
    const firstMs = await firstClosed;
    assert.ok(secondMs < 250, `second connection closed after ${secondMs} ms`);
    assert.ok(firstMs >= 250 && firstMs < 2000, `first connection closed after ${firstMs} ms`);
  });

  it('the filter door quarantines through the daemon\'s quarantine store (DoorDeps.quarantine), with the rule and client', async function () {
    requirePeer(this, smtpSinkAvailable, 'smtp-sink (postfix)');
    const sink = await startSmtpSink();
    try {
      writeFileSync(join(tmp.path, 'q.rules'), 'rule hold_it at eom: header("Subject") ~ /quarantine me/ => quarantine "held for review"\n');
      const file = join(tmp.path, 'sluice.yaml');
      writeFileSync(
        file,
        `hostname: gw.test\nrules: q.rules\nstate_dir: state\nlocks: { store: memory }\nspf: { enabled: false }\nquarantine: { dir: q }\nfilter: { listen: "127.0.0.1:0", next_hop: "127.0.0.1:${sink.port}" }\n`,
      );
      daemon = await Daemon.start({ configPath: file, registry: builtinDoors(), logWrite: () => undefined });
      const port = Number(/:(\d+)$/.exec(daemon.runningDoors.get('filter')?.addresses[0] ?? '')?.[1]);
      const c = await rawClient(port);
      try {
        assert.match(await c.reply(), /^220 /);
        await c.cmd('EHLO postfix.test');
        assert.match(await c.cmd('XFORWARD ADDR=192.0.2.7 PORT=4321 HELO=client.example NAME=mx.client.example'), /^250 /);
        assert.match(await c.cmd('MAIL FROM:<a@q.test>'), /^250 /);
        assert.match(await c.cmd('RCPT TO:<b@q.test>'), /^250 /);
        assert.match(await c.cmd('DATA'), /^354 /);
        assert.equal(await c.cmd('Subject: please quarantine me\r\n\r\nbody\r\n.'), '250 2.0.0 Ok: held for review\r\n');
        await c.cmd('QUIT');
      } finally {
        c.close();
      }
      const entries = await new QuarantineStore(join(tmp.path, 'q'), { create: false }).list();
      assert.equal(entries.length, 1);
      const e = entries[0]!;
      assert.equal(e.door, 'filter');
      assert.equal(e.reason, 'held for review');
      assert.equal(e.rule, 'hold_it');
      assert.equal(e.sender, 'a@q.test');
      assert.deepEqual(e.recipients, ['b@q.test']);
      assert.deepEqual(e.client, { ip: '192.0.2.7', port: 4321 });
      assert.equal(e.helo, 'client.example');
      assert.equal(sink.messages().length, 0, 'a quarantined message must not reach the next hop');
    } finally {
      await sink.stop();
    }
  });
});
