import { strict as assert } from 'node:assert';
import {
  createGatewayTopology,
  policyRouting,
  tproxyRuleset,
  type GatewayTopology,
} from '../helpers/netns.js';
import { requireInterceptionPeers, startRelayIn, startSmtpSink, swaks, waitRelayed, type RelayHandle, type SinkHandle } from '../helpers/netns-peers.js';

/**
 * client ──► gateway (nftables TPROXY → sluice listener in tproxy mode, full transparency) ──► server (smtp-sink).
 * The client talks to the server's address; the server sees the client's address.
 */
describe('e2e (netns): TPROXY interception with full transparency', function () {
  this.timeout(60000);
  let topo: GatewayTopology | undefined;
  let sink: SinkHandle | undefined;
  let sink587: SinkHandle | undefined;
  let relay: RelayHandle | undefined;
  let relayPortOnly: RelayHandle | undefined;
  let relayDual: RelayHandle | undefined;
  let sink2626: SinkHandle | undefined;
  const LISTEN = 10025;
  const LISTEN_EPHEMERAL = 10026;
  const LISTEN_DUAL = 10027;

  before(async function () {
    requireInterceptionPeers(this);
    topo = createGatewayTopology();
    const g = topo.gateway;
    // Port 25 (and 26/27 for failure cases) → listener with client port kept; 587 → listener with ephemeral port.
    g.nft(
      tproxyRuleset([25, 26, 27], LISTEN) +
        tproxyRuleset([587], LISTEN_EPHEMERAL).replace('sluice_tproxy', 'sluice_tproxy2') +
        tproxyRuleset([2626], LISTEN_DUAL).replace('sluice_tproxy', 'sluice_tproxy3'),
    );
    policyRouting(g);
    // Port 27 on the server silently drops SYNs, to exercise the upstream connect timeout.
    topo.server.nft('table inet drop27 {\n  chain input_drop {\n    type filter hook input priority 0; policy accept;\n    tcp dport 27 drop\n  }\n}\n');
    sink = await startSmtpSink(topo.server, topo.serverIp, 25);
    sink587 = await startSmtpSink(topo.server, topo.serverIp, 587);
    sink2626 = await startSmtpSink(topo.server, topo.serverIp, 2626);
    relay = await startRelayIn(g, { listen: { ip: '0.0.0.0', port: LISTEN }, mode: 'tproxy', transparent: true, bindClientPort: true }, 1500);
    relayPortOnly = await startRelayIn(g, { listen: { ip: '0.0.0.0', port: LISTEN_EPHEMERAL }, mode: 'tproxy', transparent: true });
    relayDual = await startRelayIn(g, { listen: { ip: '::', port: LISTEN_DUAL }, mode: 'tproxy', transparent: true });
  });

  after(async () => {
    await topo?.set.destroy();
    sink?.remove();
    sink587?.remove();
    sink2626?.remove();
  });

  it('the client talks to the server address, the server sees the client address and port', async () => {
    if (!topo || !sink || !relay) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 25, ['--header', 'Subject: tproxy e2e']);
    assert.equal(r.status, 0, r.transcript);
    assert.match(r.transcript, /Connected to 198\.18\.2\.2\./);
    assert.match(r.transcript, /<- {2}220 sink\.test/);
    assert.match(r.transcript, / -> \.\n<- {2}250 2\.0\.0 Ok\n/);
    const e = await waitRelayed(relay);
    assert.equal(e.source, 'tproxy');
    assert.equal(e.client.ip, topo.clientIp);
    assert.deepEqual(e.destination, { ip: topo.serverIp, port: 25 });
    // Full transparency with bindClientPort: the upstream socket is the client's own address and port.
    assert.deepEqual(e.upstreamLocal, e.client);
    const [msg] = await sink.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.1\.2$/m);
    assert.match(msg ?? '', /^Subject: tproxy e2e$/m);
  });

  it('without bindClientPort the client address is kept with an ephemeral port', async () => {
    if (!topo || !sink587 || !relayPortOnly) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 587, ['--header', 'Subject: ephemeral']);
    assert.equal(r.status, 0, r.transcript);
    const e = await waitRelayed(relayPortOnly);
    assert.deepEqual(e.destination, { ip: topo.serverIp, port: 587 });
    assert.equal(e.upstreamLocal.ip, topo.clientIp);
    const [msg] = await sink587.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.1\.2$/m);
    assert.match(msg ?? '', /^Subject: ephemeral$/m);
  });

  it('a dual-stack (::) tproxy listener takes IPv4 TPROXY traffic, addresses normalised to IPv4', async () => {
    if (!topo || !sink2626 || !relayDual) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 2626);
    assert.equal(r.status, 0, r.transcript);
    const e = await waitRelayed(relayDual);
    assert.equal(e.client.ip, topo.clientIp);
    assert.deepEqual(e.destination, { ip: topo.serverIp, port: 2626 });
    const [msg] = await sink2626.waitForMessages(1);
    assert.match(msg ?? '', /^X-Client-Addr: 198\.18\.1\.2$/m);
  });

  it('upstream refusal is reported as ECONNREFUSED (transparent connect)', async () => {
    if (!topo || !relay) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.serverIp, 26);
    assert.notEqual(r.status, 0);
    const e = await relay.waitForEvent((x) => x.kind === 'upstream-failed' && x.destination.port === 26, 'refused upstream');
    assert.ok(e.kind === 'upstream-failed' && e.code === 'ECONNREFUSED', JSON.stringify(e));
    assert.equal(e.client.ip, topo.clientIp);
  });

  it('upstream silence is reported as ETIMEDOUT within the connect timeout', async () => {
    if (!topo || !relay) throw new Error('setup failed');
    const t0 = Date.now();
    await swaks(topo.client, topo.serverIp, 27, ['--timeout', '4']);
    const e = await relay.waitForEvent((x) => x.kind === 'upstream-failed' && x.destination.port === 27, 'timed-out upstream');
    assert.ok(e.kind === 'upstream-failed' && e.code === 'ETIMEDOUT', JSON.stringify(e));
    assert.ok(Date.now() - t0 < 4000, 'relay gave up within its 1.5 s connect timeout');
  });

  it('a client connecting to the listener port itself is refused as a loop with a 554', async () => {
    if (!topo || !relay) throw new Error('setup failed');
    const r = await swaks(topo.client, topo.gatewayClientSideIp, LISTEN, ['--quit-after', 'CONNECT']);
    assert.match(r.transcript, /<\*\* 554 5\.4\.6 loop detected\n/);
    const e = await relay.waitForEvent((x) => x.kind === 'refused', 'loop refusal');
    assert.ok(e.kind === 'refused' && e.reason === 'loop', JSON.stringify(e));
  });
});
