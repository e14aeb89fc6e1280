import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { replyFromStderr, runFilterCommand, type FilterCommandOptions, type FilterEnvironment, type FilterInput } from '../../lib/scanners/filter-command.js';
import { processGone, writeScript } from '../helpers/filter-scripts.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { testMessage } from '../helpers/scan-samples.js';

const MSG = testMessage('Hello there\n.\nafter the dot line\n');
const input = (m: Buffer = MSG): FilterInput => ({ open: () => Readable.from([m]), digest: createHash('sha256').update(m).digest('hex') });
const ENV: FilterEnvironment = { client: '192.0.2.7', sender: 'a@example.test', recipients: ['b@example.test', 'c@example.test'], helo: 'client.example.test', server: '127.0.0.1' };

describe('filter command (proxsmtpd contract)', function () {
  this.timeout(20_000);
  const scripts = makeTempDir('sluice-filter-scripts-');
  const work = makeTempDir('sluice-filter-work-');
  after(() => {
    scripts.remove();
    work.remove();
  });
  const opts = (argv: string[], extra: Partial<FilterCommandOptions> = {}): FilterCommandOptions => ({ argv, mode: 'pipe', timeoutMs: 5000, tempDir: work.path, maxOutputBytes: 1_000_000, ...extra });
  afterEach(() => {
    // Every run cleans up its own files; only files a test kept on purpose may remain.
    for (const f of readdirSync(work.path)) if (!f.startsWith('rewritten-')) assert.fail(`left behind: ${f}`);
  });

  it('parses the last stderr line into a reply', () => {
    assert.deepEqual(replyFromStderr('noise\n554 5.7.1 Bad Email\n\n'), { code: 554, reply: '5.7.1 Bad Email' });
    assert.deepEqual(replyFromStderr('looks like spam\n'), { code: 550, reply: 'Content Rejected; looks like spam' });
    assert.deepEqual(replyFromStderr(''), { code: 550, reply: 'Content Rejected' });
    assert.deepEqual(replyFromStderr('250 dropped'), { code: 250, reply: 'dropped' });
    assert.deepEqual(replyFromStderr('451 4.3.0 later\r\n'), { code: 451, reply: '4.3.0 later' });
    assert.deepEqual(replyFromStderr('199 not a code'), { code: 550, reply: 'Content Rejected; 199 not a code' });
  });

  it('pipe mode, exit 0, unchanged output: passes without a rewritten message', async () => {
    const r = await runFilterCommand(opts(['/bin/cat']), ENV, input());
    assert.deepEqual(r, { kind: 'pass' });
  });

  it('pipe mode, exit 0, rewritten output replaces the message (LF normalised to CRLF)', async () => {
    const s = writeScript(scripts.path, 'rewrite.sh', `printf 'X-Filtered: yes\\n'; sed 's/Hello/Howdy/'`);
    const r = await runFilterCommand(opts([s]), ENV, input());
    assert.equal(r.kind, 'pass');
    assert.ok(r.kind === 'pass' && r.rewritten);
    const out = readFileSync(r.rewritten.path, 'latin1');
    assert.equal(out, 'X-Filtered: yes\r\n' + MSG.toString('latin1').replace('Hello', 'Howdy'));
    assert.equal(r.rewritten.size, out.length);
  });

  it('keeps a line that is exactly "." and everything after it in the rewritten message', async () => {
    const s = writeScript(scripts.path, 'dot.sh', `cat; printf '.\\r\\nmore after a dot\\r\\n'`);
    const r = await runFilterCommand(opts([s]), ENV, input());
    assert.ok(r.kind === 'pass' && r.rewritten);
    const out = readFileSync(r.rewritten.path, 'latin1');
    assert.ok(out.endsWith('after the dot line\r\n\r\n.\r\nmore after a dot\r\n') || out.endsWith('after the dot line\r\n.\r\nmore after a dot\r\n'), JSON.stringify(out.slice(-60)));
    assert.ok(out.includes('\r\n.\r\nafter the dot line'));
  });

  it('file mode: EMAIL is a private 0600 file the filter edits in place', async () => {
    const s = writeScript(scripts.path, 'file.sh', `stat -c %a "$EMAIL" > "${join(scripts.path, 'mode-seen')}"; sed -i 's/Hello/Edited/' "$EMAIL"`);
    const r = await runFilterCommand(opts([s], { mode: 'file' }), ENV, input());
    assert.ok(r.kind === 'pass' && r.rewritten);
    assert.ok(readFileSync(r.rewritten.path, 'latin1').includes('Edited there'));
    assert.equal(readFileSync(join(scripts.path, 'mode-seen'), 'latin1').trim(), '600');
  });

  it('non-zero exit with a full reply on stderr: that reply', async () => {
    const s = writeScript(scripts.path, 'reject.sh', `cat >/dev/null; echo "some diagnostics" >&2; echo "554 5.7.1 Bad Email" >&2; exit 1`);
    assert.deepEqual(await runFilterCommand(opts([s]), ENV, input()), { kind: 'reply', code: 554, reply: '5.7.1 Bad Email', exitCode: 1 });
  });

  it('non-zero exit with bare text: 550 with that text; with nothing: 550 generic', async () => {
    const a = writeScript(scripts.path, 'bare.sh', `echo "virus-ish content" >&2; exit 3`);
    assert.deepEqual(await runFilterCommand(opts([a]), ENV, input()), { kind: 'reply', code: 550, reply: 'Content Rejected; virus-ish content', exitCode: 3 });
    const b = writeScript(scripts.path, 'silent.sh', `exit 2`);
    assert.deepEqual(await runFilterCommand(opts([b]), ENV, input()), { kind: 'reply', code: 550, reply: 'Content Rejected', exitCode: 2 });
  });

  it('non-zero exit with a 2xx reply: code 2xx (silent drop)', async () => {
    const s = writeScript(scripts.path, 'drop.sh', `echo "250 2.0.0 dropped quietly" >&2; exit 1`);
    const r = await runFilterCommand(opts([s]), ENV, input());
    assert.equal(r.kind === 'reply' && r.code, 250);
  });

  it('a filter that hangs is killed with its children and reported as an error', async () => {
    const pidFile = join(scripts.path, 'hang.pids');
    const s = writeScript(scripts.path, 'hang.sh', `sleep 300 & echo $! > "${pidFile}"; echo $$ >> "${pidFile}"; sleep 300`);
    const t0 = Date.now();
    const r = await runFilterCommand(opts([s], { timeoutMs: 800 }), ENV, input());
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.message : '', /timed out/);
    assert.ok(Date.now() - t0 < 4000);
    const pids = readFileSync(pidFile, 'latin1').trim().split('\n').map(Number);
    assert.equal(pids.length, 2);
    await new Promise((res) => setTimeout(res, 200));
    for (const pid of pids) assert.ok(processGone(pid), `process ${pid} survived the timeout`);
  });

  it('a filter killed by a signal, or that cannot be started, is an error', async () => {
    const s = writeScript(scripts.path, 'crash.sh', `kill -SEGV $$`);
    assert.equal((await runFilterCommand(opts([s]), ENV, input())).kind, 'error');
    const r = await runFilterCommand(opts([join(scripts.path, 'missing')]), ENV, input());
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.message : '', /ENOENT/);
  });

  it('empty output with exit 0 and oversized output are errors, not deliveries', async () => {
    const e = writeScript(scripts.path, 'empty.sh', `cat >/dev/null; exit 0`);
    assert.equal((await runFilterCommand(opts([e]), ENV, input())).kind, 'error');
    const big = writeScript(scripts.path, 'big.sh', `cat >/dev/null; head -c 300000 /dev/zero`);
    const r = await runFilterCommand(opts([big], { maxOutputBytes: 100_000 }), ENV, input());
    assert.equal(r.kind, 'error');
    assert.match(r.kind === 'error' ? r.message : '', /larger than/);
  });

  it('passes hostile envelope values as inert environment data, never through a shell', async () => {
    const envOut = join(scripts.path, 'env.out');
    const canary = join(scripts.path, 'pwned');
    const s = writeScript(scripts.path, 'env.sh', `cat >/dev/null; env > "${envOut}"; printf '%s' "$SENDER" > "${envOut}.sender"; printf '%s' "$RECIPIENTS" > "${envOut}.rcpts"; echo "550 no" >&2; exit 1`);
    const hostile: FilterEnvironment = {
      client: '192.0.2.1',
      sender: `x$(touch ${canary})\`touch ${canary}\`;touch ${canary}|&>'"@example.test`,
      recipients: [`a@b\nINJECTED=1`, `$(id)@example.test`],
      remote: '198.51.100.1',
      remoteHelo: 'evil\0host',
      server: '127.0.0.1:25',
      helo: 'h',
    };
    const r = await runFilterCommand(opts([s]), hostile, input());
    assert.equal(r.kind, 'reply');
    assert.equal(existsSync(canary), false);
    assert.equal(readFileSync(`${envOut}.sender`, 'latin1'), hostile.sender);
    assert.equal(readFileSync(`${envOut}.rcpts`, 'latin1'), `a@b\nINJECTED=1\n$(id)@example.test`);
    const env = readFileSync(envOut, 'latin1');
    assert.match(env, /^CLIENT=192\.0\.2\.1$/m);
    assert.match(env, /^REMOTE=198\.51\.100\.1$/m);
    assert.match(env, /^REMOTE_HELO=evilhost$/m);
    assert.match(env, /^SERVER=127\.0\.0\.1:25$/m);
    assert.match(env, /^HELO=h$/m);
    assert.match(env, new RegExp(`^TMPDIR=${work.path}$`, 'm'));
    assert.doesNotMatch(env, /^EMAIL=/m);
    // Nothing of sluice's own environment leaks to the filter.
    assert.doesNotMatch(env, /^HOME=/m);
  });

  it('an aborted run kills the command and removes its files', async () => {
    const s = writeScript(scripts.path, 'slow.sh', `sleep 30`);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const r = await runFilterCommand(opts([s], { mode: 'file' }), ENV, input(), ac.signal);
    assert.deepEqual(r, { kind: 'error', message: 'aborted' });
  });
});
