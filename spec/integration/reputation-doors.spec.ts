/**
 * End to end: an SPF fail and a DNSBL listing produce the rule's reply in the intercept door (in front of a
 * real smtp-sink) and in the milter door (raw MTA-side milter client), with the real rule engine, our
 * resolver, SpfChecker and DnsLists, and a DNS server on loopback serving the zone.
 */
import { strict as assert } from 'node:assert';
import type { Door } from '../../lib/daemon/door.js';
import { createMilterDoor } from '../../lib/milter/milter-door.js';
import { compileRules } from '../../lib/policy/rule-compiler.js';
import { PolicyEngine } from '../../lib/policy/policy-engine.js';
import { DnsResolver } from '../../lib/policy/dns-resolver.js';
import { SpfChecker } from '../../lib/policy/spf-checker.js';
import { DnsLists } from '../../lib/policy/dnsbl.js';
import { SYSTEM_CLOCK } from '../../lib/policy/providers.js';
import { MemoryLockStore } from '../../lib/policy/lock-store-memory.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { startTestDnsServer, type TestDnsServer } from '../helpers/dns-server.js';
import { startInterceptDoor, type InterceptHarness } from '../helpers/intercept-harness.js';
import { MilterTestClient, POSTFIX_OPTNEG, testDeps } from '../helpers/milter-client.js';
import { freePort } from '../helpers/ports.js';
import { rawClient } from '../helpers/smtp-raw-client.js';
import { smtpSinkAvailable, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

const RULES = `
rule listed at connect: dnsbl(bl) => reject 554 5.7.1 "Your address is listed in bl.test"
rule strict_down at connect: dnsbl(strict) failed => tempfail 451 4.7.1 "strict list unavailable, try later"
rule spf_fail at mail: spf == fail => reject 550 5.7.23 "SPF: {spf.explanation}"
`;

const ZONE = {
  // DNSBL: 127.0.0.1 (the intercept client) is listed only while `listLoopback` is set; 192.0.2.66 always
  '66.2.0.192.bl.test': [{ type: 'A', data: '127.0.0.2' }],
  // SPF
  'spf-fail.test': [{ type: 'TXT', data: 'v=spf1 ip4:192.0.2.0/24 -all exp=why.spf-fail.test' }],
  'why.spf-fail.test': [{ type: 'TXT', data: '%{i} is not allowed to send for %{d}' }],
  'spf-pass.test': [{ type: 'TXT', data: 'v=spf1 ip4:127.0.0.0/8 ip4:192.0.2.0/24 -all' }],
} as const;

describe('reputation end to end: SPF and DNSBL verdicts through the doors', function () {
  this.timeout(20_000);
  let dns: TestDnsServer;
  let engineFor: () => PolicyEngine;

  before(async () => {
    dns = await startTestDnsServer({ zone: ZONE });
    const ruleset = compileRules([{ file: 'reputation.rules', text: RULES }], { dnsLists: new Set(['bl', 'strict']) });
    engineFor = () => {
      // a fresh resolver (and cache) per door, so the zone switch below is seen
      const resolver = new DnsResolver({ servers: [dns.address], timeoutMs: 500, retries: 0 });
      return new PolicyEngine(ruleset, {
        locks: new MemoryLockStore(),
        clock: SYSTEM_CLOCK,
        spf: new SpfChecker({ resolver, hostname: 'mx.test' }),
        dnsLists: new DnsLists({
          resolver,
          zones: [
            { name: 'bl', zone: 'bl.test', kind: 'ip', listed: ['127.0.0.2-127.0.0.11'] },
            { name: 'strict', zone: 'strict.test', kind: 'ip' },
          ],
        }),
      });
    };
  });
  after(async () => {
    await dns.stop();
  });

  describe('intercept door (client on 127.0.0.1, smtp-sink upstream)', function () {
    let sink: SmtpSink | undefined;
    let door: InterceptHarness | undefined;
    const open: Array<{ close(): void }> = [];
    const client = async (port: number) => {
      const c = await rawClient(port);
      open.push(c);
      return c;
    };

    before(async function () {
      requirePeer(this, smtpSinkAvailable, 'smtp-sink (Debian package postfix)');
      sink = await startSmtpSink();
    });
    afterEach(async () => {
      for (const c of open.splice(0)) c.close();
      await door?.stop();
      door = undefined;
      dns.setZone(ZONE);
    });
    after(async () => {
      await sink?.stop();
    });

    it('SPF fail: the rule reply with the exp= explanation; a passing sender goes through', async () => {
      door = await startInterceptDoor({ upstreamPort: sink?.port ?? 0, policy: engineFor() });
      const c = await client(door.port);
      assert.match(await c.reply(), /^220 /);
      assert.match(await c.cmd('EHLO client.test'), /^250[ -]/);
      assert.equal(await c.cmd('MAIL FROM:<someone@spf-fail.test>'), '550 5.7.23 SPF: 127.0.0.1 is not allowed to send for spf-fail.test\r\n');
      // a passing sender in the same session goes through
      assert.match(await c.cmd('RSET'), /^250 /);
      c.close();
      const c2 = await client(door.port);
      assert.match(await c2.reply(), /^220 /);
      assert.match(await c2.cmd('EHLO client.test'), /^250[ -]/);
      assert.match(await c2.cmd('MAIL FROM:<someone@spf-pass.test>'), /^250 /);
      c2.close();
    });

    it('DNSBL listing: the rule reply at connect', async () => {
      dns.setZone({ ...ZONE, '1.0.0.127.bl.test': [{ type: 'A', data: '127.0.0.2' }] });
      door = await startInterceptDoor({ upstreamPort: sink?.port ?? 0, policy: engineFor() });
      const c = await client(door.port);
      // the greeting carries no enhanced status code (RFC 2034 codes follow EHLO)
      assert.equal(await c.reply(), '554 Your address is listed in bl.test\r\n');
      c.close();
    });

    it('DNSBL down: fail-open (the rules only test "listed")', async () => {
      dns.setZone({ ...ZONE, '1.0.0.127.bl.test': [{ type: 'SERVFAIL' }] });
      door = await startInterceptDoor({ upstreamPort: sink?.port ?? 0, policy: engineFor() });
      const c = await client(door.port);
      assert.match(await c.reply(), /^220 /);
      c.close();
    });

    it('a list whose outage the rules turn into tempfail (`dnsbl(strict) failed`)', async () => {
      dns.setZone({ ...ZONE, '1.0.0.127.strict.test': [{ type: 'SERVFAIL' }] });
      door = await startInterceptDoor({ upstreamPort: sink?.port ?? 0, policy: engineFor() });
      const c = await client(door.port);
      assert.equal(await c.reply(), '451 strict list unavailable, try later\r\n');
      c.close();
    });
  });

  describe('milter door (raw MTA-side client)', function () {
    let door: Door | undefined;
    let port = 0;
    const clients: MilterTestClient[] = [];

    beforeEach(async () => {
      port = await freePort();
      door = createMilterDoor({ listen: `inet:127.0.0.1:${port}`, readTimeoutMs: 10_000 }, testDeps(engineFor()));
      await door.start();
    });
    afterEach(async () => {
      for (const c of clients.splice(0)) c.close();
      await door?.stop(100);
    });

    async function connected(ip: string): Promise<MilterTestClient> {
      const c = await MilterTestClient.open({ port });
      clients.push(c);
      c.send(POSTFIX_OPTNEG);
      assert.equal((await c.reply()).type, 'optneg');
      c.send(
        { type: 'macro', stage: 'C', macros: [['j', 'mx.test']] },
        { type: 'connect', hostname: 'client.test', family: 'inet', port: 40000, address: ip },
      );
      return c;
    }

    it('DNSBL listing: SMFIR_REPLYCODE with the rule reply at connect', async () => {
      const c = await connected('192.0.2.66');
      assert.deepEqual(await c.reply(), { type: 'replycode', text: '554 5.7.1 Your address is listed in bl.test' });
    });

    it('SPF fail at MAIL: SMFIR_REPLYCODE with the explanation; SPF pass continues', async () => {
      const c = await connected('198.51.100.7');
      assert.deepEqual(await c.reply(), { type: 'continue' });
      // the door answers every command it receives (no NR_* by default, docs/milter.md): HELO gets CONTINUE
      c.send({ type: 'helo', name: 'client.test' }, { type: 'mail', args: ['<someone@spf-fail.test>'] });
      assert.deepEqual(await c.reply(), { type: 'continue' });
      assert.deepEqual(await c.reply(), { type: 'replycode', text: '550 5.7.23 SPF: 198.51.100.7 is not allowed to send for spf-fail.test' });
      const ok = await connected('192.0.2.5');
      assert.deepEqual(await ok.reply(), { type: 'continue' });
      ok.send({ type: 'helo', name: 'client.test' }, { type: 'mail', args: ['<someone@spf-pass.test>'] });
      assert.deepEqual(await ok.reply(), { type: 'continue' }, 'HELO');
      assert.deepEqual(await ok.reply(), { type: 'continue' }, 'MAIL');
    });
  });
});
