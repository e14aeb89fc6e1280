import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { formatTextRecord } from '../../lib/daemon/log-text-format.js';
import { createDaemonLogger } from '../../lib/daemon/logger.js';
import { makeTempDir } from '../helpers/temp-dir.js';

describe('daemon logger', () => {
  it('text: one line per record, level, message, fields; client text cannot break the line', () => {
    const lines: string[] = [];
    const log = createDaemonLogger({ level: 'info', format: 'text' }, { write: (l) => lines.push(l) });
    const session = log.logger.child({ door: 'intercept', session: 'k3x9' });
    session.info({ helo: 'evil\r\n2026-01-01T00:00:00.000Z ERROR forged', client: '192.0.2.7:51234' }, 'helo');
    session.debug({}, 'not shown');
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  helo door=intercept session=k3x9 helo="evil\\r\\n2026-01-01T00:00:00\.000Z ERROR forged" client=192\.0\.2\.7:51234\n$/);
  });

  it('json: pino records with level names and ISO times', () => {
    const lines: string[] = [];
    const log = createDaemonLogger({ level: 'debug', format: 'json' }, { write: (l) => lines.push(l) });
    log.logger.child({ session: 's1' }).debug({ n: 1 }, 'hello');
    const rec = JSON.parse(lines[0] as string) as Record<string, unknown>;
    assert.equal(rec['level'], 'debug');
    assert.equal(rec['session'], 's1');
    assert.equal(rec['n'], 1);
    assert.equal(rec['msg'], 'hello');
    assert.match(String(rec['time']), /^\d{4}-\d\d-\d\dT/);
  });

  it('changes level at run time', () => {
    const lines: string[] = [];
    const log = createDaemonLogger({ level: 'warn', format: 'text' }, { write: (l) => lines.push(l) });
    log.logger.info({}, 'a');
    log.setLevel('info');
    log.logger.info({}, 'b');
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, / INFO  b\n$/);
  });

  it('text: errors show type and message; odd values never throw', () => {
    const lines: string[] = [];
    const log = createDaemonLogger({ level: 'info', format: 'text' }, { write: (l) => lines.push(l) });
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    log.logger.error({ err: new TypeError('bad thing'), n: 10n, circular, skip: undefined }, 'failed');
    assert.match(lines[0] as string, / ERROR failed err="TypeError: bad thing" n=10 circular="\[unserialisable\]"\n$/);
    assert.equal(log.logger.isLevelEnabled?.('debug'), false);
    assert.equal(log.logger.isLevelEnabled?.('warn'), true);
  });

  it('formats pino records compactly', () => {
    const line = formatTextRecord({ level: 50, time: 0, msg: 'failed', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n at x' }, list: ['a', 'b'], ok: true });
    assert.equal(line, '1970-01-01T00:00:00.000Z ERROR failed err="Error: boom" list=["a","b"] ok=true\n');
  });

  it('writes to a file and reopens it after rotation', async () => {
    const tmp = makeTempDir();
    try {
      const file = join(tmp.path, 'logs', 'sluice.log');
      const log = createDaemonLogger({ level: 'info', format: 'text', file });
      log.logger.info({}, 'first');
      await log.flush();
      await new Promise((r) => setTimeout(r, 50));
      renameSync(file, file + '.1');
      log.reopen();
      await new Promise((r) => setTimeout(r, 50));
      log.logger.info({}, 'second');
      await log.flush();
      await new Promise((r) => setTimeout(r, 50));
      assert.match(readFileSync(file + '.1', 'utf8'), / INFO  first\n$/);
      assert.match(readFileSync(file, 'utf8'), /^\S+ INFO  second\n$/);
    } finally {
      tmp.remove();
    }
  });
});
