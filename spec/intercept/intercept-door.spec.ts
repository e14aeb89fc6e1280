/**
 * The intercept door with the listener modes it is built on: PROXY protocol (the client and destination from the
 * header reach the rules; bytes after the header are the client's), update(deps) for new sessions only,
 * session limits in total.
 */
import assert from 'node:assert/strict';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';
import { doorDeps, lockStoreIn } from '../helpers/postfix-door-deps.js';
import { realPolicy } from '../helpers/intercept-harness.js';
import { rawClient } from '../helpers/smtp-raw-client.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { createInterceptDoor } from '../../lib/intercept/intercept-door.js';
import type { Door } from '../../lib/daemon/door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';

describe('intercept door: listener modes, update, limits', function () {
  this.timeout(10000);
  let up: FaultUpstream;
  let dir: { path: string; remove: () => void };
  let locks: LockStore;
  let door: Door | undefined;

  beforeEach(async () => {
    up = await startFaultUpstream();
    dir = makeTempDir('sluice-door-');
    locks = lockStoreIn(dir.path);
  });

  afterEach(async () => {
    await door?.stop(200);
    door = undefined;
    await locks.close();
    dir.remove();
    await up.close();
  });

  it('proxy mode: rules see the client from the PROXY v1 header; the SMTP bytes after it are relayed', async () => {
    const port = await freePort();
    const rules = 'rule who at mail: client.ip == 192.0.2.7 => reject 550 5.7.1 "client {client.ip} port {client.port}"\n';
    door = createInterceptDoor(
      { listeners: [{ listen: { ip: '127.0.0.1', port }, mode: 'proxy', upstream: { ip: '127.0.0.1', port: up.port }, proxyTrusted: ['127.0.0.0/8'] }] },
      doorDeps({ policy: realPolicy(rules, locks), locks }),
    );
    await door.start();
    const c = await rawClient(port);
    c.write('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n');
    assert.equal(await c.reply(), '220 fault.test ESMTP ready\r\n');
    await c.cmd('EHLO client.test');
    assert.equal(await c.cmd('MAIL FROM:<a@b.example>'), '550 5.7.1 client 192.0.2.7 port 40000\r\n');
    c.close();
  });

  it('update(deps): running sessions keep their policy, new sessions get the new one', async () => {
    const port = await freePort();
    const mk = (text: string) => doorDeps({ policy: realPolicy(`rule r at mail: sender == "x@y" => reject 550 5.7.1 "${text}"\n`, locks), locks });
    door = createInterceptDoor({ listeners: [{ listen: { ip: '127.0.0.1', port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: up.port } }] }, mk('old'));
    await door.start();
    const old = await rawClient(port);
    await old.reply();
    await old.cmd('EHLO a.test');
    door.update(mk('new'));
    const fresh = await rawClient(port);
    await fresh.reply();
    await fresh.cmd('EHLO b.test');
    assert.equal(await old.cmd('MAIL FROM:<x@y>'), '550 5.7.1 old\r\n');
    assert.equal(await fresh.cmd('MAIL FROM:<x@y>'), '550 5.7.1 new\r\n');
    old.close();
    fresh.close();
  });

  it('over limits.sessions: 421 to the next client, whatever its address', async () => {
    const port = await freePort();
    door = createInterceptDoor(
      { listeners: [{ listen: { ip: '127.0.0.1', port }, mode: 'fixed', upstream: { ip: '127.0.0.1', port: up.port } }] },
      doorDeps({ policy: realPolicy('', locks), locks, limits: { sessions: 2 } }),
    );
    await door.start();
    const a = await rawClient(port);
    const b = await rawClient(port);
    assert.match(await a.reply(), /^220 /);
    assert.match(await b.reply(), /^220 /);
    const c = await rawClient(port);
    assert.equal(await c.reply(), '421 4.7.0 sluice.test Too many connections, try again later\r\n');
    assert.equal(door.activeSessions, 2);
    a.close();
    b.close();
    c.close();
  });
});
