import { strict as assert } from 'node:assert';
import {
  createGatewayTopology,
  policyRouting,
  redirectRuleset,
  type GatewayTopology,
} from '../helpers/netns.js';
import { requireInterceptionPeers, startRelayIn, startSmtpSink, swaks, tcpProbe, waitRelayed, type RelayHandle, type SinkHandle } from '../helpers/netns-peers.js';

/**
 * client ──► gateway (nftables REDIRECT → sluice listener in redirect mode, SO_ORIGINAL_DST) ──► server (smtp-sink).
 * Also IPv6 (IP6T_SO_ORIGINAL_DST) and IPv4-on-dual-stack inside the gateway namespace over loopback.
 */
describe('e2e (netns): REDIRECT interception (SO_ORIGINAL_DST)', function () {
  this.timeout(60000);
  let topo: GatewayTopology | undefined;
  let sink: SinkHandle | undefined;
  let relayTransparent: RelayHandle | undefined;
  let relayPlain: RelayHandle | undefined;
  let relayLocal: RelayHandle | undefined;
  const LISTEN_T = 10025;
  const LISTEN_P = 10026;
  const LISTEN_L = 10027;

  before(async function () {
    requireInterceptionPeers(this);
    topo = createGatewayTopology();
    const g = topo.gateway;
    g.nft(
      redirectRuleset([25], LISTEN_T) +
        redirectRuleset([2525], LISTEN_P).replace('sluice_redirect', 'sluice_redirect2') +
        // Locally generated connections (loopback, both families) to 2626 go to the dual-stack listener.
        `table inet sluice_local {
  chain output {
    type nat hook output priority -100; policy accept;
    tcp dport 2626 redirect to :${LISTEN_L}
  }
}
`,
    );
    // Full transparency needs the reply path to the spoofed socket (same as with TPROXY).
    g.nft(`table inet sluice_tsock {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 1 accept
  }
}
`);
    policyRouting(g);
    sink = await startSmtpSink(topo.server, topo.serverIp, 25);
    await startSmtpSink(topo.server, topo.serverIp, 2525).then((s) => (sinkPlain = s));
    relayTransparent = await startRelayIn(g, { listen: { ip: '0.0.0.0', port: LISTEN_T }, mode: 'redirect', transparent: true });
    relayPlain = await startRelayIn(g, { listen: { ip: '0.0.0.0', port: LISTEN_P }, mode: 'redirect' });
    relayLocal = await startRelayIn(g, { listen: { ip: '::', port: LISTEN_L }, mode: 'redirect' });
  });
  let sinkPlain: SinkHandle | undefined;

  after(async () => {
    await topo?.set.destroy();
    sink?.remove();
    sinkPlain?.remove();
  });

  it('finds the original destination; with full transparency the server sees the client', async () => {
    if (!topo || !sink || !relayTransparent) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 25, ['--header', 'Subject: redirect e2e']);
    assert.equal(r.status, 0, r.transcript);
    assert.match(r.transcript, /Connected to 198\.18\.2\.2\./);
    assert.match(r.transcript, /<- {2}220 sink\.test ESMTP/);
    const e = await waitRelayed(relayTransparent);
    assert.equal(e.source, 'redirect');
    assert.equal(e.client.ip, topo.clientIp);
    assert.deepEqual(e.destination, { ip: topo.serverIp, port: 25 });
    assert.equal(e.upstreamLocal.ip, topo.clientIp);
    const [msg] = await sink.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.1\.2$/m);
    assert.match(msg ?? '', /^Subject: redirect e2e$/m);
  });

  it('without transparency the server sees the gateway (the NAT-mode default)', async () => {
    if (!topo || !sinkPlain || !relayPlain) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 2525);
    assert.equal(r.status, 0, r.transcript);
    const e = await waitRelayed(relayPlain);
    assert.deepEqual(e.destination, { ip: topo.serverIp, port: 2525 });
    assert.equal(e.client.ip, topo.clientIp);
    const [msg] = await sinkPlain.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.2\.1$/m);
  });

  it('a direct (not redirected) connection to the listener is refused as a loop', async () => {
    if (!topo || !relayTransparent) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.gatewayClientSideIp, LISTEN_T, ['--quit-after', 'CONNECT']);
    assert.match(r.transcript, /<\*\* 554 5\.4\.6 loop detected\n/);
    const e = await relayTransparent.waitForEvent((x) => x.kind === 'refused', 'refused');
    assert.ok(e.kind === 'refused' && e.reason === 'loop', JSON.stringify(e));
  });

  it('IPv6 (IP6T_SO_ORIGINAL_DST) and IPv4 on a dual-stack listener: original port recovered, client==destination refused', async () => {
    if (!topo || !relayLocal) throw new Error('setup failed');
    // Inside the gateway the only addresses are loopback, so client == destination: the loop rule must fire,
    // and it can only name port 2626 if SO_ORIGINAL_DST worked for the family.
    for (const [server, family] of [['::1', 'IPv6'], ['127.0.0.1', 'IPv4']] as const) {
      const n = relayLocal.events.length;
      const got = await tcpProbe(topo.gateway, server, 2626);
      assert.equal(got, '554 5.4.6 loop detected\r\n', `${family}: ${relayLocal.output()}`);
      const e = await relayLocal.waitForEvent((x) => relayLocal?.events.indexOf(x) === n, `${family} refusal`);
      assert.ok(e.kind === 'refused' && e.reason === 'loop', JSON.stringify(e));
      assert.match(e.detail, /client itself/);
      assert.deepEqual(e.kind === 'refused' ? e.destination : undefined, { ip: server, port: 2626 });
    }
  });
});
