import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import type { Door } from '../../lib/daemon/door.js';
import { encodePolicyRequest } from '../../lib/milter/policy-codec.js';
import { createPolicyDoor, type PolicyDoorOptions } from '../../lib/milter/policy-door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { doorDeps, lockStoreIn, memoryLogger, scriptedPolicy, type Decide, type ScriptedPolicy } from '../helpers/postfix-door-deps.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { SocketBuffer, type TakeUnit } from '../helpers/socket-buffer.js';
import { promptAcksOverTcp } from '../helpers/milter-client.js';

/** The attributes Postfix 3.7 sends, in its order (reference/protocols.md §3.2). */
function postfixRequest(over: Record<string, string>): Array<[string, string]> {
  const base: Record<string, string> = {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: '192.0.2.7',
    client_name: 'mail.example.org',
    client_port: '56616',
    reverse_client_name: 'mail.example.org',
    server_address: '127.0.0.1',
    server_port: '25',
    helo_name: 'mail.example.org',
    sender: 'a@example.org',
    recipient: 'b@example.net',
    recipient_count: '0',
    queue_id: '',
    instance: '13e.6b012297.160d.0',
    size: '0',
    etrn_domain: '',
    stress: '',
    sasl_method: '',
    sasl_username: '',
    sasl_sender: '',
    ccert_subject: '',
    ccert_issuer: '',
    ccert_fingerprint: '',
    ccert_pubkey_fingerprint: '',
    encryption_protocol: '',
    encryption_cipher: '',
    encryption_keysize: '0',
    policy_context: '',
    ...over,
  };
  return Object.entries(base);
}

/** One answer block's action off the front of the buffer. */
const takeAction: TakeUnit<string> = (buf) => {
  const end = buf.indexOf('\n\n');
  if (end < 0) return undefined;
  const block = buf.slice(0, end);
  const m = /^action=(.*)$/m.exec(block);
  return { value: m ? m[1]! : `(no action in ${JSON.stringify(block)})`, rest: buf.slice(end + 2) };
};

/** A raw policy client: send blocks, read answers. */
class RawClient extends SocketBuffer {
  static async open(port: number): Promise<RawClient> {
    return new RawClient(await SocketBuffer.connectTo(port), 'utf8');
  }
  /** The next answer block's action, or undefined if the server closed first. */
  answer(timeoutMs = 3000): Promise<string | undefined> {
    return this.take(takeAction, timeoutMs, 'answer');
  }
  async ask(attrs: Array<[string, string]>): Promise<string | undefined> {
    this.send(encodePolicyRequest(attrs));
    return await this.answer();
  }
  close(): void {
    this.socket.destroy();
  }
}

describe('policy door (raw policy protocol over TCP)', () => {
  let temp: ReturnType<typeof makeTempDir>;
  let locks: LockStore;
  let door: Door | undefined;
  const clients: RawClient[] = [];

  before(() => {
    temp = makeTempDir('sluice-policy-');
    locks = lockStoreIn(temp.path);
  });
  after(async () => {
    await locks.close();
    temp.remove();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await door?.stop(500);
    door = undefined;
  });

  async function startDoor(decide: Decide, opts: Partial<PolicyDoorOptions> = {}, logger = memoryLogger()): Promise<{ policy: ScriptedPolicy; port: number; logger: ReturnType<typeof memoryLogger> }> {
    const policy = scriptedPolicy(decide);
    door = createPolicyDoor({ listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, ...opts }, doorDeps({ policy, locks, logger }));
    await door.start();
    const port = Number(door.addresses[0]!.split(':').pop());
    return { policy, port, logger };
  }
  async function client(port: number): Promise<RawClient> {
    const c = await RawClient.open(port);
    clients.push(c);
    return c;
  }

  it('answers many requests on one connection, across messages, running the stages up to protocol_state once per message', async () => {
    const { policy, port } = await startDoor((stage, tx) => {
      if (stage === 'rcpt' && tx.envelope.rcpt === 'spamtrap@example.net') return { action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['No such user'] } };
      return undefined;
    });
    const c = await client(port);
    assert.equal(await c.ask(postfixRequest({ protocol_state: 'RCPT', recipient: 'ok@example.net' })), 'DUNNO');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo', 'mail', 'rcpt']);
    const rcptTx = policy.calls[3]!.tx;
    assert.equal(rcptTx.session.client.ip, '192.0.2.7');
    assert.equal(rcptTx.session.client.port, 56616);
    assert.equal(rcptTx.session.clientName, 'mail.example.org');
    assert.equal(rcptTx.session.helo, 'mail.example.org');
    assert.equal(rcptTx.session.heloExtended, true);
    assert.equal(rcptTx.session.door, 'policy');
    assert.equal(rcptTx.envelope.mailFrom, 'a@example.org');
    assert.equal(rcptTx.envelope.rcpt, 'ok@example.net');

    // Same message (same instance): only the rcpt stage runs again.
    policy.calls.length = 0;
    assert.equal(await c.ask(postfixRequest({ protocol_state: 'RCPT', recipient: 'spamtrap@example.net' })), '550 5.7.1 No such user');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['rcpt']);
    assert.deepEqual(policy.calls[0]!.tx.envelope.rcpts, ['ok@example.net']);

    // END-OF-MESSAGE of that message: data and eom, with the real size.
    policy.calls.length = 0;
    assert.equal(await c.ask(postfixRequest({ protocol_state: 'END-OF-MESSAGE', recipient: 'ok@example.net', recipient_count: '1', size: '1234' })), 'DUNNO');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['data', 'eom']);
    assert.equal(policy.calls[1]!.tx.message.size, 1234);

    // A new instance on the same connection (next SMTP session, with AUTH and TLS): everything runs again.
    policy.calls.length = 0;
    assert.equal(
      await c.ask(postfixRequest({ instance: '13e.6b012297.160d.1', protocol_state: 'MAIL', recipient: '', client_address: '2001:db8::5', sasl_username: 'alice', sasl_method: 'PLAIN', encryption_protocol: 'TLSv1.3', encryption_cipher: 'TLS_AES_256_GCM_SHA384', size: '999' })),
      'DUNNO',
    );
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo', 'auth', 'mail']);
    const tx = policy.calls[3]!.tx;
    assert.equal(tx.session.client.ip, '2001:db8::5');
    assert.deepEqual(tx.session.auth, { user: 'alice', mechanism: 'PLAIN' });
    assert.deepEqual(tx.session.tls, { active: true, protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
    assert.equal(tx.envelope.declaredSize, 999);
  });

  it('repeats a message-level decision for later requests of the same message without evaluating again', async () => {
    const { policy, port } = await startDoor((stage, tx) =>
      stage === 'mail' && tx.envelope.mailFrom === 'bad@example.org' ? { action: 'tempfail', reply: { code: 451, enhanced: '4.7.1', lines: ['Sender on probation'] } } : undefined,
    );
    const c = await client(port);
    const req = (rcpt: string) => postfixRequest({ sender: 'bad@example.org', recipient: rcpt });
    assert.equal(await c.ask(req('x@example.net')), '451 4.7.1 Sender on probation');
    assert.equal(await c.ask(req('y@example.net')), '451 4.7.1 Sender on probation');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo', 'mail']);
  });

  it('renders discard, quarantine, accept and one PREPEND per answer', async () => {
    const { port } = await startDoor((stage, tx) => {
      const r = tx.envelope.rcpt ?? '';
      if (stage === 'mail') return { mutations: [{ kind: 'add', name: 'X-Sluice-A', value: 'one' }, { kind: 'add', name: 'X-Sluice-B', value: 'two' }, { kind: 'change', name: 'Subject', value: '', index: 1 }] };
      if (stage !== 'rcpt') return undefined;
      if (r.startsWith('discard')) return { action: 'discard', reason: 'silently' };
      if (r.startsWith('hold')) return { action: 'quarantine', reason: 'look at it' };
      if (r.startsWith('accept')) return { action: 'accept' };
      return undefined;
    });
    const c = await client(port);
    assert.equal(await c.ask(postfixRequest({ recipient: 'one@example.net' })), 'PREPEND X-Sluice-A: one');
    assert.equal(await c.ask(postfixRequest({ recipient: 'two@example.net' })), 'PREPEND X-Sluice-B: two');
    assert.equal(await c.ask(postfixRequest({ recipient: 'three@example.net' })), 'DUNNO');
    assert.equal(await c.ask(postfixRequest({ recipient: 'discard@example.net' })), 'DISCARD silently');
    assert.equal(await c.ask(postfixRequest({ recipient: 'hold@example.net' })), 'HOLD look at it');
    assert.equal(await c.ask(postfixRequest({ recipient: 'accept@example.net' })), 'DUNNO');
  });

  it('DATA without earlier RCPT requests runs rcpt for the single named recipient; VRFY runs session stages only', async () => {
    const { policy, port } = await startDoor(() => undefined);
    const c = await client(port);
    assert.equal(await c.ask(postfixRequest({ protocol_state: 'DATA', recipient: 'only@example.net', recipient_count: '1' })), 'DUNNO');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo', 'mail', 'rcpt', 'data']);
    assert.deepEqual(policy.calls[4]!.tx.envelope.rcpts, ['only@example.net']);
    policy.calls.length = 0;
    assert.equal(await c.ask(postfixRequest({ instance: 'v.1', protocol_state: 'VRFY', recipient: '' })), 'DUNNO');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo']);
    policy.calls.length = 0;
    // Several recipients at DATA: Postfix names none, so the rcpt stage cannot run there.
    assert.equal(await c.ask(postfixRequest({ instance: 'd.2', protocol_state: 'DATA', recipient: '', recipient_count: '3' })), 'DUNNO');
    assert.deepEqual(policy.calls.map((x) => x.stage), ['connect', 'helo', 'mail', 'data']);
  });

  it('a reload (update) applies from the next message on, never in the middle of one', async () => {
    const { port } = await startDoor(() => undefined);
    const c = await client(port);
    assert.equal(await c.ask(postfixRequest({ instance: 'm.1', recipient: 'a@example.net' })), 'DUNNO');
    const strict = scriptedPolicy((stage) => (stage === 'rcpt' ? { action: 'reject', reply: { code: 550, enhanced: '5.7.1', lines: ['New rules'] } } : undefined));
    door!.update(doorDeps({ policy: strict, locks }));
    assert.equal(await c.ask(postfixRequest({ instance: 'm.1', recipient: 'b@example.net' })), 'DUNNO');
    assert.equal(await c.ask(postfixRequest({ instance: 'm.2', recipient: 'c@example.net' })), '550 5.7.1 New rules');
  });

  it('answers OK for accept only when configured', async () => {
    const { port } = await startDoor((stage) => (stage === 'rcpt' ? { action: 'accept' } : undefined), { acceptAction: 'ok' });
    const c = await client(port);
    assert.equal(await c.ask(postfixRequest({})), 'OK');
  });

  it('tolerates unknown attributes and answers DUNNO to unknown protocol states', async () => {
    const { policy, port } = await startDoor(() => ({ action: 'reject' }));
    const c = await client(port);
    assert.equal(await c.ask([['request', 'smtpd_access_policy'], ['protocol_state', 'WHATEVER'], ['x_future', '1']]), 'DUNNO');
    assert.equal(policy.calls.length, 0);
    assert.equal(await c.ask([['request', 'smtpd_access_policy'], ['protocol_state', 'CONNECT'], ['client_address', '192.0.2.1'], ['tls_sni', 'mx.example'], ['mail_version', '3.9.0']]), '550 5.7.1 Rejected by policy');
  });

  it('closes without an answer on a broken or oversized request, and keeps serving other connections', async () => {
    const { port, logger } = await startDoor(() => undefined, { maxRequest: 4096, maxAttributes: 50 });
    const bad = await client(port);
    bad.send('this is not a policy request\n\n');
    assert.equal(await bad.answer(), undefined);

    const huge = await client(port);
    huge.send('request=smtpd_access_policy\nsender=' + 'x'.repeat(10_000));
    assert.equal(await huge.answer(), undefined);

    const many = await client(port);
    many.send(Array.from({ length: 60 }, (_, i) => `a${i}=1\n`).join('') + '\n');
    assert.equal(await many.answer(), undefined);

    const good = await client(port);
    assert.equal(await good.ask(postfixRequest({})), 'DUNNO');
    const warns = logger.records.filter((r) => r.level === 'warn').map((r) => (r.obj as { reason?: string }).reason ?? '');
    assert.ok(warns.some((w) => /not name=value/.test(w)), JSON.stringify(warns));
    assert.ok(warns.some((w) => /longer than|larger than/.test(w)), JSON.stringify(warns));
  });

  it('closes idle connections and slow requests', async () => {
    const { port } = await startDoor(() => undefined, { idleTimeoutMs: 300, requestTimeoutMs: 300 });
    const idle = await client(port);
    assert.equal(await idle.ask(postfixRequest({})), 'DUNNO');
    const slow = await client(port);
    slow.send('request=smtpd_access_policy\n');
    const t0 = Date.now();
    assert.equal(await slow.answer(), undefined);
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(await idle.answer(), undefined);
  });

  it('a TCP client that connects and says nothing does not take the only connection slot (TCP_DEFER_ACCEPT)', async () => {
    assert.ok(promptAcksOverTcp, 'the native addon is built');
    const { port } = await startDoor(() => undefined, { maxConnections: 1 });
    await client(port);
    await new Promise((r) => setTimeout(r, 100));
    // Without the deferred accept the silent connection holds the slot and this request is never read.
    const postfix = await client(port);
    assert.equal(await postfix.ask(postfixRequest({})), 'DUNNO');
  });

  it('listens on a unix socket too (check_policy_service unix:/path), mode 0660', async () => {
    const path = `${temp.path}/policy.sock`;
    const policy = scriptedPolicy(() => undefined);
    door = createPolicyDoor({ listen: { kind: 'unix', path } }, doorDeps({ policy, locks }));
    await door.start();
    assert.deepEqual(door.addresses, [`unix:${path}`]);
    assert.equal(statSync(path).mode & 0o777, 0o660);
    const c = new RawClient(await SocketBuffer.connectTo({ path }), 'utf8');
    clients.push(c);
    assert.equal(await c.ask(postfixRequest({})), 'DUNNO');
  });

  it('refuses TCP clients outside allowFrom', async () => {
    const { port, policy } = await startDoor(() => undefined, { allowFrom: ['192.0.2.0/24'] });
    const c = await client(port);
    c.send(encodePolicyRequest(postfixRequest({})));
    assert.equal(await c.answer(), undefined);
    assert.equal(policy.calls.length, 0);
  });

  it('closes the connection without answering when evaluation fails', async () => {
    const { port } = await startDoor(() => {
      throw new Error('engine exploded');
    });
    const c = await client(port);
    assert.equal(await c.ask(postfixRequest({})), undefined);
  });

  it('drains on stop: an in-flight request is answered, then the connection closes', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const { port } = await startDoor(async (stage) => {
      if (stage === 'rcpt') await gate;
      return undefined;
    });
    const c = await client(port);
    c.send(encodePolicyRequest(postfixRequest({})));
    await new Promise((r) => setTimeout(r, 100));
    const stopping = door!.stop(3000);
    door = undefined;
    setTimeout(release, 100);
    assert.equal(await c.answer(), 'DUNNO');
    await stopping;
    assert.equal(await c.answer(), undefined);
  });
});
