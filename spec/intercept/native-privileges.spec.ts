import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { requirePeer } from '../helpers/ci-guard.js';
import { buildRoot } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { loadNative } from '../../lib/intercept/native-sockopt.js';

/**
 * In a child process (root): drop to "nobody" with and without dropPrivilegesKeepingNetAdmin, then try a
 * transparent upstream connect (bind 127.0.0.9 with IP_TRANSPARENT). Without it: EPERM; with it: connected.
 */
describe('native helper: keeping CAP_NET_ADMIN across the privilege drop', () => {
  before(function () {
    requirePeer(this, loadNative() !== undefined, 'native helper (npx node-gyp rebuild -C native)');
    requirePeer(this, process.getuid?.() === 0, 'root');
  });

  function child(keep: boolean): { uid: number; result: string; caps: string } {
    const tmp = makeTempDir();
    try {
      const lib = (p: string): string => pathToFileURL(join(buildRoot, 'lib', 'intercept', p)).href;
      const script = join(tmp.path, 'drop.mjs');
      writeFileSync(
        script,
        `import * as net from 'node:net';
import { readFileSync } from 'node:fs';
import { dropPrivilegesKeepingNetAdmin, loadNative } from ${JSON.stringify(lib('native-sockopt.js'))};
import { connectUpstream } from ${JSON.stringify(lib('upstream-connect.js'))};
const srv = net.createServer((s) => s.end());
await new Promise((r) => srv.listen(0, '127.0.0.1', r));
// load the add-on while still root, as the daemon does: after the drop the build dir may be unreadable
if (!loadNative()) throw new Error('native helper did not load');
const drop = () => { process.setgid(65534); process.setuid(65534); };
if (${keep}) dropPrivilegesKeepingNetAdmin(drop); else drop();
const caps = readFileSync('/proc/thread-self/status', 'utf8').split('\\n').filter((l) => /^Cap(Prm|Eff)/.test(l)).join(' ');
let result;
try {
  const s = await connectUpstream({ ip: '127.0.0.1', port: srv.address().port }, { transparentSource: { ip: '127.0.0.9', port: 0 }, timeoutMs: 2000 });
  result = 'connected from ' + s.localAddress;
  s.destroy();
} catch (e) { result = e.code; }
srv.close();
console.log(JSON.stringify({ uid: process.getuid(), result, caps }));
`,
      );
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 15000 });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout.trim()) as { uid: number; result: string; caps: string };
    } finally {
      tmp.remove();
    }
  }

  it('a plain setuid loses IP_TRANSPARENT (EPERM)', () => {
    const r = child(false);
    assert.equal(r.uid, 65534);
    assert.equal(r.result, 'EPERM');
  });

  it('dropPrivilegesKeepingNetAdmin keeps exactly CAP_NET_ADMIN + CAP_NET_RAW, and transparent connects work', () => {
    const r = child(true);
    assert.equal(r.uid, 65534);
    assert.equal(r.result, 'connected from 127.0.0.9');
    // CAP_NET_ADMIN = bit 12, CAP_NET_RAW = bit 13 → 0x3000.
    assert.match(r.caps, /CapPrm:\s+0000000000003000/);
    assert.match(r.caps, /CapEff:\s+0000000000003000/);
  });
});
