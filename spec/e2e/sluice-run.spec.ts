import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { requirePeer } from '../helpers/ci-guard.js';
import {
  createGatewayTopology,
  policyRouting,
  redirectRuleset,
  tproxyRuleset,
  type GatewayTopology,
  type Netns,
} from '../helpers/netns.js';
import { requireInterceptionPeers, startSmtpSink, swaks, waitListening, type SinkHandle } from '../helpers/netns-peers.js';
import { cliMain } from '../helpers/paths.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const NAT_RULE =
  'rule nat-header at data: => add header "X-NAT-Received" "from [{client.ip}]:{client.port} [ident-empty]\\n\\tby {proxy.name} with TPROXY id {session.start}.{pid}"\n';

interface RunningSluice {
  output(): string;
  /** The output once `re` has matched `count` times (the log is written in batches, up to 250 ms late). */
  waitForOutput(re: RegExp, count?: number, timeoutMs?: number): Promise<string>;
}

/** `sluice run` inside a namespace with the given intercept listeners; resolves once it logged its start. */
async function startSluice(ns: Netns, dir: string, listeners: string): Promise<RunningSluice> {
  mkdirSync(join(dir, 'rules'), { recursive: true });
  writeFileSync(join(dir, 'rules', 'nat.rules'), NAT_RULE);
  writeFileSync(
    join(dir, 'sluice.yaml'),
    `hostname: gw.test\nuser: nobody\nstate_dir: ${join(dir, 'state')}\nrules: ${join(dir, 'rules')}\nspf: { enabled: false }\nlog: { level: info }\nintercept:\n${listeners}`,
  );
  const child = ns.spawn([process.execPath, cliMain, 'run', '-c', join(dir, 'sluice.yaml')]);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 15000;
  while (!/sluice started/.test(out)) {
    if (child.exitCode !== null) throw new Error(`sluice run exited ${child.exitCode}: ${out}`);
    if (Date.now() > deadline) throw new Error(`sluice run did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    output: () => out,
    async waitForOutput(re, count = 1, timeoutMs = 5000) {
      const global = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
      const until = Date.now() + timeoutMs;
      while ([...out.matchAll(global)].length < count && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
      return out;
    },
  };
}

/**
 * The real daemon (`sluice run`, intercept door) on the gateway: tproxy with full transparency and redirect.
 * The client talks to the server's address, the server sees the client, and the X-NAT-Received header written by
 * the door carries the client's address and port. It runs with `user: nobody`: the privilege drop keeps only
 * CAP_NET_ADMIN + CAP_NET_RAW, which every transparent upstream connect still needs.
 */
describe('e2e (netns): sluice run as a transparent gateway', function () {
  this.timeout(60000);
  let topo: GatewayTopology | undefined;
  let sink: SinkHandle | undefined;
  let sink2: SinkHandle | undefined;
  let sink26: SinkHandle | undefined;
  let tmp: { path: string; remove: () => void } | undefined;
  let sluice: RunningSluice | undefined;

  before(async function () {
    requireInterceptionPeers(this);
    requirePeer(this, existsSync(cliMain), `built CLI at ${cliMain}`);
    topo = createGatewayTopology();
    const g = topo.gateway;
    g.nft(tproxyRuleset([25], 10025) + redirectRuleset([2525], 10026) + tproxyRuleset([26], 10027).replace('sluice_tproxy', 'sluice_tproxy_workers'));
    policyRouting(g);
    sink = await startSmtpSink(topo.server, topo.serverIp, 25);
    sink2 = await startSmtpSink(topo.server, topo.serverIp, 2525);
    sink26 = await startSmtpSink(topo.server, topo.serverIp, 26);
    tmp = makeTempDir('sluice-e2e-');
    chmodSync(tmp.path, 0o755);
    sluice = await startSluice(
      g,
      tmp.path,
      '  - name: tp\n    listen: 0.0.0.0:10025\n    mode: tproxy\n    transparent: true\n    bind_port: true\n' +
        '  - name: nat\n    listen: 0.0.0.0:10026\n    mode: redirect\n    transparent: true\n' +
        '  - name: wk\n    listen: 0.0.0.0:10027\n    mode: tproxy\n    transparent: true\n    workers: 2\n',
    );
    await waitListening(g, 10025);
    await waitListening(g, 10026);
    await waitListening(g, 10027);
  });

  after(async () => {
    await topo?.set.destroy();
    sink?.remove();
    sink2?.remove();
    sink26?.remove();
    tmp?.remove();
  });

  it('tproxy + full transparency: server sees the client, X-NAT-Received names the client address and port', async () => {
    if (!topo || !sink) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 25, ['--header', 'Subject: via sluice run']);
    assert.equal(r.status, 0, `${r.transcript}\n${sluice?.output() ?? ''}`);
    assert.match(r.transcript, /Connected to 198\.18\.2\.2\./);
    assert.match(r.transcript, /<- {2}220 sink\.test ESMTP/);
    const [msg] = await sink.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.1\.2$/m);
    assert.match(msg ?? '', /^X-NAT-Received: from \[198\.18\.1\.2\]:\d+ \[ident-empty\]\r?\n\tby gw\.test with TPROXY id /m);
    assert.match(msg ?? '', /^Subject: via sluice run$/m);
  });

  it('runs as nobody after binding, keeping exactly CAP_NET_ADMIN + CAP_NET_RAW', () => {
    const out = sluice?.output() ?? '';
    assert.match(out, /dropped privileges user=nobody uid=65534 gid=\d+ kept=CAP_NET_ADMIN,CAP_NET_RAW/);
    const pid = /sluice started .*pid=(\d+)/.exec(out)?.[1];
    assert.ok(pid, out);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    assert.match(status, /^CapEff:\s+0000000000003000$/m);
  });

  it('redirect + full transparency: same, found through SO_ORIGINAL_DST', async () => {
    if (!topo || !sink2) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 2525, ['--header', 'Subject: redirect via sluice run']);
    assert.equal(r.status, 0, `${r.transcript}\n${sluice?.output() ?? ''}`);
    const [msg] = await sink2.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.1\.2$/m);
    assert.match(msg ?? '', /^X-NAT-Received: from \[198\.18\.1\.2\]:\d+ /m);
  });

  it('tproxy + full transparency with workers: 2: the same on the wire, sessions run in workers that dropped to nobody', async () => {
    if (!topo || !sink26) throw new Error('setup failed');
    for (let i = 0; i < 2; i++) {
      const r = await swaks(topo.client, topo.serverIp, 26, ['--header', `Subject: via a worker ${i}`]);
      assert.equal(r.status, 0, `${r.transcript}\n${sluice?.output() ?? ''}`);
      assert.match(r.transcript, /Connected to 198\.18\.2\.2\./);
    }
    const msgs = await sink26.waitForMessages(2);
    for (const msg of msgs) {
      assert.match(msg, /^X-Client-Addr: 198\.18\.1\.2$/m);
      assert.match(msg, /^X-NAT-Received: from \[198\.18\.1\.2\]:\d+ /m);
    }
    await sluice?.waitForOutput(/intercept worker ready door=wk pid=/, 2);
    const out = (await sluice?.waitForOutput(/session start pid=\d+ .*event=NEW .*dst=198\.18\.2\.2:26 /, 2)) ?? '';
    const workers = [...out.matchAll(/intercept worker ready door=wk pid=(\d+)/g)].map((m) => Number(m[1]));
    assert.equal(workers.length, 2, out);
    // The sessions ran in the workers (not in the daemon), which run as nobody with the two network capabilities.
    const ran = [...out.matchAll(/session start pid=(\d+) .*event=NEW .*dst=198\.18\.2\.2:26 /g)].map((m) => Number(m[1]));
    assert.equal(ran.length, 2, out);
    for (const pid of ran) assert.ok(workers.includes(pid), `session logged by pid ${pid}, not a worker: ${out}`);
    for (const pid of workers) {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
      assert.match(status, /^CapEff:\s+0000000000003000$/m);
    }
  });

  it('a client connecting to the gateway listener directly gets a 554 loop refusal from the door', async () => {
    if (!topo) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.gatewayClientSideIp, 10025, ['--quit-after', 'CONNECT']);
    assert.match(r.transcript, /<\*\* 554 /, `${r.transcript}\n${sluice?.output() ?? ''}`);
  });
});
