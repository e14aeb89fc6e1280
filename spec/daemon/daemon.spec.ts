import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiagnosticsError } from '../../lib/core/errors.js';
import { Daemon } from '../../lib/daemon/daemon.js';
import { DoorRegistry } from '../../lib/daemon/door-registry.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { createTestDoor, LineClient } from '../helpers/test-door.js';

function registry(): DoorRegistry {
  return new DoorRegistry().register('intercept', (s, _c, deps) => createTestDoor(s, deps));
}

function config(opts: { hostname: string; ports: number[]; extra?: string }): string {
  return `hostname: ${opts.hostname}
locks: { store: memory }
spf: { enabled: false }
drain_timeout: 2s
intercept:
${opts.ports.map((p, i) => `  - { name: door${i}, listen: 127.0.0.1:${p}, upstream: 127.0.0.1:9 }`).join('\n')}
${opts.extra ?? ''}`;
}

async function refused(port: number): Promise<boolean> {
  try {
    const c = await LineClient.connect(port);
    c.close();
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
  }
}

describe('daemon lifecycle', function () {
  this.timeout(15000);
  let tmp: { path: string; remove: () => void };
  let file: string;
  let logs: string[];
  let daemon: Daemon | undefined;
  const clients: LineClient[] = [];

  beforeEach(() => {
    tmp = makeTempDir();
    file = join(tmp.path, 'sluice.yaml');
    logs = [];
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await daemon?.stop(0);
    daemon = undefined;
    tmp.remove();
  });

  async function start(text: string): Promise<Daemon> {
    writeFileSync(file, text);
    daemon = await Daemon.start({ configPath: file, registry: registry(), logWrite: (l) => logs.push(l) });
    return daemon;
  }
  async function client(port: number): Promise<LineClient> {
    const c = await LineClient.connect(port);
    clients.push(c);
    return c;
  }
  const logged = (re: RegExp): string[] => logs.filter((l) => re.test(l));

  it('starts every door and logs one line per door with its address', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    await start(config({ hostname: 'one.test', ports: [p1, p2] }));
    assert.equal(logged(/INFO  door listening door=door0 kind=intercept listen=127\.0\.0\.1:\d+ addresses=\["127\.0\.0\.1:\d+"\]/).length, 1);
    assert.equal(logged(/door listening door=door1 /).length, 1);
    assert.equal(logged(/INFO  sluice started config=.*sluice\.yaml doors=\["intercept:door0","intercept:door1"\]/).length, 1);
    const c = await client(p2);
    assert.equal(await c.readLine(), 'hello door1');
    assert.equal(await c.ask('who'), 'one.test');
  });

  it('refuses to start on a bad configuration, with every problem', async () => {
    writeFileSync(file, 'hostnme: x\nintercept: [{listen: "127.0.0.1:1", mode: fixd}]\n');
    await assert.rejects(Daemon.start({ configPath: file, registry: registry(), logWrite: (l) => logs.push(l) }), (err: unknown) => {
      assert.ok(err instanceof DiagnosticsError);
      assert.deepEqual(err.diagnostics.map((d) => `${d.location?.line}:${d.location?.column} ${d.message}`), [
        '1:1 unknown key hostnme',
        '2:43 intercept[0].mode: expected one of fixed, tproxy, redirect, proxy, got "fixd"',
      ]);
      return true;
    });
  });

  it('does not start half: a port in use stops the doors already started', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(p2, '127.0.0.1', () => r()));
    try {
      writeFileSync(file, config({ hostname: 'x.test', ports: [p1, p2] }));
      await assert.rejects(Daemon.start({ configPath: file, registry: registry(), logWrite: (l) => logs.push(l) }), /EADDRINUSE/);
      assert.ok(await refused(p1), 'the first door must have been stopped');
    } finally {
      blocker.close();
    }
  });

  it('SIGHUP reload: new sessions get the new configuration, running sessions keep theirs', async () => {
    const p = await freePort();
    const d = await start(config({ hostname: 'old.test', ports: [p] }));
    const before = await client(p);
    await before.readLine();
    writeFileSync(file, config({ hostname: 'new.test', ports: [p] }));
    const outcome = await d.reload();
    assert.deepEqual(outcome, { ok: true, kept: ['intercept:door0'], started: [], stopped: [] });
    const after = await client(p);
    await after.readLine();
    assert.equal(await after.ask('who'), 'new.test');
    assert.equal(await before.ask('who'), 'old.test');
    assert.equal(logged(/INFO  configuration reloaded .*kept=\["intercept:door0"\] started=\[\] stopped=\[\]/).length, 1);
  });

  it('SIGHUP reload of a bad file is refused whole and the old configuration keeps serving', async () => {
    const [p, q] = [await freePort(), await freePort()];
    const d = await start(config({ hostname: 'old.test', ports: [p] }));
    // A good change (hostname, a new listener) together with a bad key: nothing of it may apply.
    writeFileSync(file, config({ hostname: 'new.test', ports: [p, q], extra: 'limits:\n  idle_timout: 5s\n' }));
    const outcome = await d.reload();
    assert.equal(outcome.ok, false);
    assert.ok(await refused(q), 'the new listener must not have been started');
    const c = await client(p);
    await c.readLine();
    assert.equal(await c.ask('who'), 'old.test');
    const err = logged(/ERROR unknown key limits\.idle_timout/);
    assert.equal(err.length, 1);
    assert.match(err[0] as string, /code=config\/unknown-key file=\S+sluice\.yaml line=9 column=3 /);
    assert.match(err[0] as string, /hint: did you mean \\"idle_timeout\\"\?/);
    assert.equal(logged(/ERROR reload refused; the running configuration stays in force/).length, 1);
    assert.equal(d.configuration.hostname, 'old.test');
  });

  it('SIGHUP reload restarts a listener whose address changed and stops removed ones', async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const d = await start(config({ hostname: 'h.test', ports: [p1, p2] }));
    writeFileSync(file, config({ hostname: 'h.test', ports: [p3] }));
    const outcome = await d.reload();
    assert.deepEqual(outcome, { ok: true, kept: [], started: ['intercept:door0'], stopped: ['intercept:door0', 'intercept:door1'] });
    const c = await client(p3);
    assert.equal(await c.readLine(), 'hello door0');
    await d.stop(0);
    assert.ok(await refused(p1));
    assert.ok(await refused(p2));
  });

  it('SIGHUP reload whose new address is taken is refused and changes nothing', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const d = await start(config({ hostname: 'old.test', ports: [p1] }));
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(p2, '127.0.0.1', () => r()));
    try {
      writeFileSync(file, config({ hostname: 'new.test', ports: [p2] }));
      const outcome = await d.reload();
      assert.equal(outcome.ok, false);
      const c = await client(p1);
      await c.readLine();
      assert.equal(await c.ask('who'), 'old.test');
      assert.equal(logged(/ERROR reload failed .*EADDRINUSE/).length, 1);
    } finally {
      blocker.close();
    }
  });

  it('a reload that fails on its second new listener takes the first one down again', async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const d = await start(config({ hostname: 'old.test', ports: [p1] }));
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(p3, '127.0.0.1', () => r()));
    try {
      writeFileSync(file, config({ hostname: 'new.test', ports: [p1, p2, p3] }));
      assert.equal((await d.reload()).ok, false);
      assert.ok(await refused(p2), 'the listener started for the refused reload must be closed again');
      assert.deepEqual([...d.runningDoors.keys()], ['intercept:door0']);
      const c = await client(p1);
      await c.readLine();
      assert.equal(await c.ask('who'), 'old.test');
    } finally {
      blocker.close();
    }
  });

  it('a listener restarted on the same address with new settings comes back', async () => {
    const p = await freePort();
    const d = await start(config({ hostname: 'h.test', ports: [p] }));
    writeFileSync(file, config({ hostname: 'h.test', ports: [p] }).replace('upstream: 127.0.0.1:9', 'upstream: 127.0.0.1:10'));
    const outcome = await d.reload();
    assert.deepEqual(outcome, { ok: true, kept: [], started: ['intercept:door0'], stopped: ['intercept:door0'] });
    const c = await client(p);
    assert.equal(await c.readLine(), 'hello door0');
  });

  it('SIGUSR1 status: one line per door and a summary with sessions and reloads', async () => {
    const p = await freePort();
    const d = await start(config({ hostname: 'h.test', ports: [p] }));
    const c = await client(p);
    await c.readLine();
    await d.reload();
    writeFileSync(file, 'broken: [');
    await d.reload();
    d.logStatus();
    assert.equal(logged(new RegExp(`INFO  status door door=intercept:door0 kind=intercept addresses=\\["127\\.0\\.0\\.1:${p}"\\] active_sessions=1`)).length, 1);
    assert.equal(logged(/INFO  status pid=\d+ uptime_s=\d+ reloads=1 reloads_refused=1 last_reload=\S+ rules=0 active_sessions=1 draining_doors=0/).length, 1);
  });

  it('reload keeps the lock store when locks did not change, and opens the new one when they did', async () => {
    const p = await freePort();
    const sqlite = (name: string): string => config({ hostname: 'h.test', ports: [p] }).replace('locks: { store: memory }', `locks: { store: sqlite, path: ${name} }`);
    writeFileSync(file, sqlite('a.sqlite'));
    const d = await start(sqlite('a.sqlite'));
    const before = (d as unknown as { runtime: { locks: unknown } }).runtime.locks;
    writeFileSync(file, sqlite('a.sqlite').replace('hostname: h.test', 'hostname: h2.test'));
    assert.equal((await d.reload()).ok, true);
    assert.equal((d as unknown as { runtime: { locks: unknown } }).runtime.locks, before, 'same store object kept');
    writeFileSync(file, sqlite('b.sqlite'));
    assert.equal((await d.reload()).ok, true);
    assert.notEqual((d as unknown as { runtime: { locks: unknown } }).runtime.locks, before);
    assert.ok(existsSync(join(tmp.path, 'b.sqlite')));
    await d.stop(0);
    assert.equal(logged(/WARN|ERROR/).length, 0, logs.join(''));
  });

  it('reload applies log level and format', async () => {
    const p = await freePort();
    const d = await start(config({ hostname: 'h.test', ports: [p] }));
    writeFileSync(file, config({ hostname: 'h.test', ports: [p], extra: 'log: { level: debug, format: json }\n' }));
    assert.equal((await d.reload()).ok, true);
    const last = JSON.parse(logs[logs.length - 1] as string) as Record<string, unknown>;
    assert.equal(last['msg'], 'configuration reloaded');
    assert.equal(last['level'], 'info');
    d.logger.debug({ probe: 1 }, 'debug probe');
    assert.equal(JSON.parse(logs[logs.length - 1] as string)['msg'], 'debug probe');
  });

  it('SIGTERM drain: stops accepting at once, lets a running session finish, then stops', async () => {
    const p = await freePort();
    const d = await start(config({ hostname: 'h.test', ports: [p] }));
    const c = await client(p);
    await c.readLine();
    const t0 = Date.now();
    const stopping = d.stop(5000);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(await refused(p), 'no new connections while draining');
    assert.equal(await c.ask('who'), 'h.test', 'the running session still works');
    assert.equal(await c.ask('quit'), 'bye');
    await stopping;
    assert.ok(Date.now() - t0 < 3000, 'stop returns once the last session ended, not after the whole drain time');
    assert.equal(logged(/INFO  stopping doors=\["intercept:door0"\] active_sessions=1 drain_ms=5000/).length, 1);
    assert.equal(logged(/INFO  sluice stopped/).length, 1);
  });

  it('SIGTERM drain: a session still open after drain_timeout is closed', async () => {
    const p = await freePort();
    const d = await start(config({ hostname: 'h.test', ports: [p] }));
    const c = await client(p);
    await c.readLine();
    const t0 = Date.now();
    await d.stop(300);
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 2000, `stop took ${took} ms`);
    await assert.rejects(c.ask('who'));
  });
});
