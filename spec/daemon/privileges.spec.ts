import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lookupGroup, lookupUser } from '../../lib/daemon/privileges.js';
import { loadNative } from '../../lib/intercept/native-sockopt.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { cliMain } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir } from '../helpers/temp-dir.js';

describe('daemon privileges', function () {
  this.timeout(20000);

  it('looks users and groups up in passwd/group files', () => {
    const tmp = makeTempDir();
    try {
      writeFileSync(join(tmp.path, 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nsluice:x:998:997::/var/lib/sluice:/usr/sbin/nologin\n');
      writeFileSync(join(tmp.path, 'group'), 'root:x:0:\nmail:x:8:\n');
      assert.deepEqual(lookupUser('sluice', join(tmp.path, 'passwd')), { name: 'sluice', uid: 998, gid: 997 });
      assert.deepEqual(lookupUser('998', join(tmp.path, 'passwd')), { name: 'sluice', uid: 998, gid: 997 });
      assert.equal(lookupUser('nobody-here', join(tmp.path, 'passwd')), undefined);
      assert.equal(lookupGroup('mail', join(tmp.path, 'group')), 8);
      assert.equal(lookupGroup('nogroup-here', join(tmp.path, 'group')), undefined);
    } finally {
      tmp.remove();
    }
  });

  it('drops to the configured user after binding and hands it the state directory', async function () {
    requirePeer(this, process.getuid?.() === 0 && lookupUser('nobody') !== undefined, 'root and a nobody user (privilege drop)');
    const tmp = makeTempDir();
    chmodSync(tmp.path, 0o755);
    const port = await freePort();
    writeFileSync(join(tmp.path, 'sluice.yaml'), `user: nobody\nstate_dir: state\nspf: { enabled: false }\npolicyd: { listen: "127.0.0.1:${port}" }\n`);
    const child = spawn(process.execPath, [cliMain, 'run', '-c', 'sluice.yaml'], { cwd: tmp.path, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    try {
      const deadline = Date.now() + 10000;
      while (!/sluice started/.test(out) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      assert.match(out, /INFO  dropped privileges user=nobody uid=65534 gid=\d+/);
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
      assert.equal(statSync(join(tmp.path, 'state')).uid, 65534);
      assert.equal(statSync(join(tmp.path, 'state', 'locks.sqlite')).uid, 65534);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      tmp.remove();
    }
  });

  describe('with a transparent intercept listener', () => {
    before(function () {
      requirePeer(this, process.getuid?.() === 0 && lookupUser('nobody') !== undefined, 'root and a "nobody" user');
      requirePeer(this, loadNative() !== undefined, 'native helper (npx node-gyp rebuild -C native)');
    });

    it('keeps exactly CAP_NET_ADMIN + CAP_NET_RAW, and the upstream still sees the client address', async () => {
      const tmp = makeTempDir();
      chmodSync(tmp.path, 0o755);
      // The upstream: greets, and remembers where each connection came from.
      const peers: string[] = [];
      const upstream: Server = createServer((s) => {
        peers.push(s.remoteAddress ?? '');
        s.end('220 up.test ESMTP\r\n');
      });
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
      const upPort = (upstream.address() as { port: number }).port;
      const port = await freePort();
      writeFileSync(
        join(tmp.path, 'sluice.yaml'),
        `user: nobody\nstate_dir: state\nspf: { enabled: false }\nintercept:\n  - { listen: "127.0.0.1:${port}", upstream: "127.0.0.1:${upPort}", transparent: true }\n`,
      );
      const child = spawn(process.execPath, [cliMain, 'run', '-c', 'sluice.yaml'], { cwd: tmp.path, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => child.on('exit', r));
      let client: Socket | undefined;
      try {
        const deadline = Date.now() + 10000;
        while (!/sluice started/.test(out) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        assert.match(out, /INFO  dropped privileges user=nobody uid=65534 gid=\d+ kept=CAP_NET_ADMIN,CAP_NET_RAW/);
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
        assert.match(status, /^CapEff:\s+0000000000003000$/m);
        assert.match(status, /^CapPrm:\s+0000000000003000$/m);
        // A client from 127.0.0.9: the transparent upstream connect (IP_TRANSPARENT, after the drop) binds that address.
        const c = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.9' });
        client = c;
        let greeting = '';
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`no greeting: ${JSON.stringify(greeting)}\n${out}`)), 5000);
          c.on('data', (d: Buffer) => {
            greeting += d.toString();
            if (greeting.includes('\r\n')) {
              clearTimeout(t);
              resolve();
            }
          });
          c.on('error', reject);
        });
        assert.equal(greeting, '220 up.test ESMTP\r\n', out);
        assert.deepEqual(peers, ['127.0.0.9']);
        c.destroy();
        child.kill('SIGTERM');
        assert.equal(await exited, 0);
      } finally {
        client?.destroy();
        if (child.exitCode === null) child.kill('SIGKILL');
        upstream.close();
        tmp.remove();
      }
    });
  });
});
