import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NULL_LOGGER } from '../../lib/core/logger.js';
import { acceptRecipient, reduceTransaction, startTransaction, type Transaction } from '../../lib/core/transaction.js';
import type { Effect } from '../../lib/core/verdict.js';
import { createActionHookRunner, hookEnvironment, type ActionHookRunner } from '../../lib/daemon/action-hook-runner.js';
import { processGone, writeScript } from '../helpers/filter-scripts.js';
import { makeTempDir } from '../helpers/temp-dir.js';

function tx(): Transaction {
  let t = startTransaction({ stage: 'connect', door: 'intercept', client: { ip: '192.0.2.55', port: 40123 }, destination: { ip: '198.51.100.25', port: 25 }, destinationSource: 'tproxy' }, 'sess-1', 0);
  t = reduceTransaction(t, { stage: 'helo', name: 'evil.example', extended: true });
  t = reduceTransaction(t, { stage: 'mail', address: 'spammer@example.test' });
  t = reduceTransaction(t, { stage: 'rcpt', address: 'victim@example.test' });
  t = acceptRecipient(t);
  t = reduceTransaction(t, { stage: 'scan', results: { virus: { found: true, name: 'Eicar-Test', scanner: 'clamd' }, spam: { score: 12.5, threshold: 5, symbols: [], isSpam: true } } });
  t = reduceTransaction(t, { stage: 'eom', size: 1234 });
  return t;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('action hook runner', function () {
  it('RCPTS_TOTAL counts the recipients of the whole session, not only the current transaction', () => {
    let t = tx();
    t = reduceTransaction(t, { stage: 'reset' });
    t = reduceTransaction(t, { stage: 'mail', address: 'again@example.test' });
    t = reduceTransaction(t, { stage: 'rcpt', address: 'second@example.test' });
    t = acceptRecipient(t);
    assert.equal(t.envelope.rcpts.length, 1);
    const env = hookEnvironment({ kind: 'hook', hook: 'notify', rule: 'r', env: {} }, t, 'gw.example', 0, '/bin');
    assert.equal(env['RCPTS_TOTAL'], '2');
  });

  this.timeout(20_000);
  const dir = makeTempDir('sluice-hooks-');
  const runners: ActionHookRunner[] = [];
  after(() => {
    for (const r of runners) r.close();
    dir.remove();
  });

  it('fires with smtp-gated\'s environment (and the effect\'s values), argv only, without being waited on', async () => {
    const out = join(dir.path, 'env.out');
    const script = writeScript(dir.path, 'hook.sh', `sleep 0.3; env > "${out}.tmp"; echo "$@" > "${out}.args"; pwd > "${out}.cwd"; mv "${out}.tmp" "${out}"`);
    const r = createActionHookRunner({ hooks: { notify: { command: [script, 'first arg'], timeout: 5000 } }, proxyName: 'gw.example', cwd: dir.path, legacyArgs: true, now: () => 1_700_000_000_000 }, NULL_LOGGER);
    runners.push(r);
    const effect: Effect = { kind: 'hook', hook: 'notify', rule: 'virus-lock', env: { FOUND: 'VIRUS', LOCK_DURATION: '3600', 'bad key': 'x', PATH: '/evil' } };
    const t0 = Date.now();
    r.run([effect, { kind: 'tag', tag: 't', rule: 'r' }], tx());
    assert.ok(Date.now() - t0 < 100, 'run() must not wait for the hook');
    assert.equal(r.running, 1);
    assert.equal(existsSync(out), false);
    await waitFor(() => existsSync(out));
    const env = Object.fromEntries(readFileSync(out, 'latin1').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.deepEqual(
      { ...env, PWD: undefined, SHLVL: undefined, _: undefined, OLDPWD: undefined },
      {
        PATH: '/usr/local/bin:/usr/bin:/bin',
        PROXY_NAME: 'gw.example',
        HOOK: 'notify',
        RULE: 'virus-lock',
        FOUND: 'VIRUS',
        SESSION_ID: 'sess-1',
        DOOR: 'intercept',
        SOURCE_IP: '192.0.2.55',
        SOURCE_PORT: '40123',
        TARGET_IP: '198.51.100.25',
        TARGET_PORT: '25',
        IDENT: '-',
        HELO: 'evil.example',
        MAIL_FROM: 'spammer@example.test',
        RCPTS_TOTAL: '1',
        SIZE: '1234',
        TRANSACTION: '1',
        AUTH: '',
        VIRUS_NAME: 'Eicar-Test',
        SPAM_SCORE: '12.500',
        LOCK_DURATION: '3600',
        TIME: '2023-11-14T22:13:20.000Z',
        UNIXTIME: '1700000000',
        PWD: undefined,
        SHLVL: undefined,
        _: undefined,
        OLDPWD: undefined,
      },
    );
    assert.equal(readFileSync(`${out}.args`, 'latin1').trim(), 'first arg VIRUS 192.0.2.55 - 198.51.100.25');
    assert.equal(readFileSync(`${out}.cwd`, 'latin1').trim(), dir.path);
    await waitFor(() => r.running === 0);
  });

  it('bounds concurrency, queues the rest, and drops beyond the queue', async () => {
    const count = join(dir.path, 'count');
    const script = writeScript(dir.path, 'slow.sh', `echo x >> "${count}"; sleep 0.4`);
    const r = createActionHookRunner({ hooks: { slow: { command: [script], timeout: 5000 } }, proxyName: 'gw', maxConcurrent: 2, maxQueued: 2 }, NULL_LOGGER);
    runners.push(r);
    const e: Effect = { kind: 'hook', hook: 'slow', rule: 'r', env: {} };
    r.run([e, e, e, e, e, e], tx());
    assert.equal(r.running, 2);
    assert.equal(r.queued, 2);
    await waitFor(() => r.running === 0 && r.queued === 0);
    assert.equal(readFileSync(count, 'latin1').trim().split('\n').length, 4);
  });

  it('kills a hook (and its children) that outlives its timeout; ignores unknown hooks', async () => {
    const pids = join(dir.path, 'pids');
    const script = writeScript(dir.path, 'hang.sh', `sleep 60 & echo $! > "${pids}"; echo $$ >> "${pids}"; wait`);
    const r = createActionHookRunner({ hooks: { hang: { command: [script], timeout: 300 } }, proxyName: 'gw' }, NULL_LOGGER);
    runners.push(r);
    r.run([{ kind: 'hook', hook: 'nope', rule: 'r', env: {} }, { kind: 'hook', hook: 'hang', rule: 'r', env: {} }], tx());
    assert.equal(r.running, 1);
    await waitFor(() => existsSync(pids) && readFileSync(pids, 'latin1').trim().split('\n').length === 2);
    await waitFor(() => r.running === 0);
    await new Promise((res) => setTimeout(res, 100));
    for (const p of readFileSync(pids, 'latin1').trim().split('\n').map(Number)) assert.ok(processGone(p), `pid ${p} survived`);
  });

  it('logs a hook that cannot be started and keeps going', async () => {
    const r = createActionHookRunner({ hooks: { missing: { command: [join(dir.path, 'nope')], timeout: 1000 } }, proxyName: 'gw' }, NULL_LOGGER);
    runners.push(r);
    r.run([{ kind: 'hook', hook: 'missing', rule: 'r', env: {} }], tx());
    await waitFor(() => r.running === 0);
  });
});
