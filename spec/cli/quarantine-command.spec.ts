import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QuarantineStore, type QuarantineMeta } from '../../lib/daemon/quarantine-store.js';
import { requirePeer } from '../helpers/ci-guard.js';
import { cliMain } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { testMessage } from '../helpers/scan-samples.js';
import { smtpSinkAvailable, startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { makeTempDir } from '../helpers/temp-dir.js';

async function cli(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliMain, 'quarantine', ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const META: QuarantineMeta = {
  sender: 'sender@example.test',
  recipients: ['rcpt1@example.test', 'rcpt2@example.test'],
  client: { ip: '192.0.2.9', port: 5555 },
  helo: 'evil\x1b[31m.example',
  sessionId: 'sess-9',
  door: 'filter',
  reason: 'virus Eicar',
  rule: 'virus-hold',
};

describe('sluice quarantine (CLI round trip)', function () {
  this.timeout(60_000);
  const t = makeTempDir('sluice-qcli-');
  let sink: SmtpSink | undefined;
  after(async () => {
    await sink?.stop();
    t.remove();
  });

  before(function () {
    requirePeer(this, existsSync(cliMain), `built CLI at ${cliMain}`);
  });

  it('lists, shows, deletes with --dir; unknown ids and bad ids are errors', async () => {
    const dir = join(t.path, 'q1');
    const q = new QuarantineStore(dir);
    const e = await q.add(META, testMessage('held body\n.\ndot line above', 'Quarantined!'));
    const list = await cli(['list', '--dir', dir]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^${e.id}  .* sender@example\\.test .* rcpt1@example\\.test \\(\\+1\\) .* virus Eicar$`, 'm'));
    const json = await cli(['list', '--dir', dir, '--json']);
    assert.deepEqual(JSON.parse(json.stdout), [e]);
    const show = await cli(['show', e.id, '--dir', dir]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^reason: +virus Eicar$/m);
    assert.match(show.stdout, /^rule: +virus-hold$/m);
    assert.match(show.stdout, /^helo: +evil\\x1b\[31m\.example$/m, 'control characters are escaped');
    assert.match(show.stdout, /^Subject: Quarantined!$/m);
    assert.doesNotMatch(show.stdout, /held body/);
    const raw = await cli(['show', e.id, '--dir', dir, '--raw']);
    assert.equal(raw.stdout, testMessage('held body\n.\ndot line above', 'Quarantined!').toString('latin1'));
    assert.equal((await cli(['show', '20990101T000000Z-000000000000', '--dir', dir])).code, 1);
    const bad = await cli(['show', '../../etc/passwd', '--dir', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a quarantine id/);
    const del = await cli(['delete', e.id, '--dir', dir]);
    assert.equal(del.code, 0);
    assert.match((await cli(['list', '--dir', dir])).stdout, /quarantine is empty/);
    assert.equal((await cli(['frobnicate', '--dir', dir])).code, 64);
    assert.equal((await cli(['release', e.id, '--dir', dir])).code, 1);
    // A quarantine directory the daemon has not created yet is an empty quarantine.
    const none = await cli(['list', '--dir', join(t.path, 'not-yet')]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /quarantine is empty \(.*not-yet does not exist yet\)/);
    assert.equal((await cli(['show', e.id, '--dir', join(t.path, 'not-yet')])).code, 1);
  });

  it('releases a message by SMTP to a real MTA (smtp-sink), dot line intact, then deletes it', async function () {
    requirePeer(this, smtpSinkAvailable, 'Postfix smtp-sink');
    sink = await startSmtpSink();
    const dir = join(t.path, 'q2');
    const q = new QuarantineStore(dir);
    const msg = testMessage('release me\n.\n..two dots\nend', 'Released');
    const e = await q.add(META, msg);
    const r = await cli(['release', e.id, '--dir', dir, '--to', `127.0.0.1:${sink.port}`, '--helo', 'gw.example.test']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /released .* to 2 recipient\(s\)/);
    const [m] = await sink.waitForMessages(1);
    assert.ok(m);
    assert.equal(m.sender, 'sender@example.test');
    assert.deepEqual(m.recipients, ['rcpt1@example.test', 'rcpt2@example.test']);
    assert.equal(m.helo, 'gw.example.test');
    assert.ok(m.content.endsWith('release me\n.\n..two dots\nend\n'), JSON.stringify(m.content.slice(-50)));
    assert.equal(existsSync(q.messagePath(e.id)), false);
  });

  it('reads the quarantine directory and the release target from -c CONFIG; a refused release keeps the entry', async () => {
    const base = join(t.path, 'cfg');
    mkdirSync(base);
    const deadPort = await freePort();
    const cfg = join(base, 'sluice.yaml');
    writeFileSync(cfg, [`hostname: gw.example.test`, `quarantine:`, `  dir: ./quarantine`, `filter:`, `  listen: 127.0.0.1:${await freePort()}`, `  next_hop: 127.0.0.1:${deadPort}`, ''].join('\n'));
    const q = new QuarantineStore(join(base, 'quarantine'));
    const e = await q.add(META, testMessage('x'));
    const list = await cli(['list', '-c', cfg]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(e.id));
    const rel = await cli(['release', e.id, '-c', cfg]);
    assert.equal(rel.code, 1);
    assert.match(rel.stderr, new RegExp(`sending to 127\\.0\\.0\\.1:${deadPort} failed`));
    assert.equal(existsSync(q.messagePath(e.id)), true);
  });
});
