import assert from 'node:assert/strict';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { parseListenAddress } from '../../lib/milter/milter-server.js';
import { memoryLogger, MilterTestClient, POSTFIX_OPTNEG, promptAcksOverTcp, scriptedPolicy, testDeps } from '../helpers/milter-client.js';
import { freePort } from '../helpers/ports.js';

describe('milter/milter-server', () => {
  it('parses Postfix and libmilter endpoint syntax, refuses anything else with a reason', () => {
    assert.deepEqual(parseListenAddress('inet:127.0.0.1:8890'), { kind: 'inet', host: '127.0.0.1', port: 8890 });
    assert.deepEqual(parseListenAddress('inet:8890@127.0.0.1'), { kind: 'inet', host: '127.0.0.1', port: 8890 });
    assert.deepEqual(parseListenAddress('inet6:8890@::1'), { kind: 'inet', host: '::1', port: 8890 });
    assert.deepEqual(parseListenAddress('inet:[::1]:8890'), { kind: 'inet', host: '::1', port: 8890 });
    assert.deepEqual(parseListenAddress('unix:/run/sluice/milter.sock'), { kind: 'unix', path: '/run/sluice/milter.sock' });
    assert.deepEqual(parseListenAddress('local:/run/m.sock'), { kind: 'unix', path: '/run/m.sock' });
    assert.match(String(parseListenAddress('127.0.0.1:8890')), /must look like/);
    assert.match(String(parseListenAddress('unix:relative.sock')), /must be absolute/);
    assert.match(String(parseListenAddress('inet:127.0.0.1:99999')), /not a port number/);
    assert.match(String(parseListenAddress('inet:127.0.0.1')), /not a port number|has no port/);
    assert.throws(() => createMilterDoor({ listen: 'tcp:1' }, testDeps(scriptedPolicy([], () => undefined))), /must look like/);
  });

  describe('session limit and drain', function () {
    this.timeout(10_000);
    let door: Door | undefined;
    afterEach(async () => {
      await door?.stop(100);
      door = undefined;
    });

    /** A rules-free door on a free port and one client that has negotiated with it. */
    async function doorWithNegotiatedClient(): Promise<{ door: Door; client: MilterTestClient; port: number }> {
      const port = await freePort();
      const d = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(scriptedPolicy([], () => undefined)));
      door = d;
      await d.start();
      const client = await MilterTestClient.open({ port });
      client.send(POSTFIX_OPTNEG);
      assert.equal((await client.reply()).type, 'optneg');
      return { door: d, client, port };
    }

    it('refuses connections beyond limits.sessions with a log line; the others keep working', async () => {
      const logger = memoryLogger();
      const port = await freePort();
      door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(scriptedPolicy([], () => undefined), { limits: { sessions: 1 }, logger }));
      await door.start();
      assert.deepEqual(door.addresses, [`inet:127.0.0.1:${port}`]);
      const a = await MilterTestClient.open({ port });
      a.send(POSTFIX_OPTNEG);
      assert.equal((await a.reply()).type, 'optneg');
      assert.equal(door.activeSessions, 1);
      const b = await MilterTestClient.open({ port });
      // An MTA speaks first; until it does, TCP_DEFER_ACCEPT keeps the connection from the door (next test).
      b.send(POSTFIX_OPTNEG);
      assert.ok(await b.closedWithin(1000));
      assert.ok(logger.records.some((r) => r.msg === 'milter connection refused: session limit reached'));
      a.send({ type: 'connect', hostname: 'h', family: 'inet', port: 1, address: '192.0.2.1' });
      assert.deepEqual(await a.reply(), { type: 'continue' });
      a.close();
    });

    it('a TCP client that connects and says nothing takes no session until its first packet (TCP_DEFER_ACCEPT)', async () => {
      assert.ok(promptAcksOverTcp, 'the native addon is built');
      const port = await freePort();
      door = createMilterDoor({ listen: `inet:127.0.0.1:${port}` }, testDeps(scriptedPolicy([], () => undefined), { limits: { sessions: 1 } }));
      await door.start();
      const silent = await MilterTestClient.open({ port });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(door.activeSessions, 0, 'a silent connection was accepted');
      // It does not hold the only slot either: an MTA that speaks is served.
      const mta = await MilterTestClient.open({ port });
      mta.send(POSTFIX_OPTNEG);
      assert.equal((await mta.reply()).type, 'optneg');
      assert.equal(door.activeSessions, 1);
      mta.close();
      silent.close();
    });

    it('closes at once after QUIT, without waiting for the MTA to close first', async () => {
      const { door: d, client: c } = await doorWithNegotiatedClient();
      // The client keeps its side open: the door must not wait for the client's FIN to end the session.
      c.socket.allowHalfOpen = true;
      const ended = new Promise((resolve) => c.socket.once('end', resolve));
      c.send({ type: 'quit' });
      await ended;
      const deadline = Date.now() + 500;
      while (d.activeSessions > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(d.activeSessions, 0, 'the session waited for the client to close');
      c.close();
    });

    it('stop(drainMs) waits for sessions, then closes what is left and stops listening', async () => {
      const { door: d, client: a, port } = await doorWithNegotiatedClient();
      const t0 = Date.now();
      await d.stop(300);
      const took = Date.now() - t0;
      assert.ok(took >= 250 && took < 3000, `stop took ${took} ms`);
      assert.ok(await a.closedWithin(500));
      assert.equal(d.activeSessions, 0);
      assert.deepEqual(d.addresses, []);
      await assert.rejects(MilterTestClient.open({ port }));
      door = undefined;
    });
  });
});
