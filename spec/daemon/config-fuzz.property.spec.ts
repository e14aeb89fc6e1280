/**
 * Property: whatever an operator's edit does to a configuration file (a value of the wrong type or shape, a line
 * deleted, duplicated or mis-indented, an unknown key, garbage), the loader either accepts it or refuses it with
 * diagnostics that each carry a stable code, a message, and the file position (line and column inside the file,
 * with the offending line for the caret). It never throws anything else, never reports an empty error, and never
 * hangs. The base text is conf/sluice.yaml with every door section switched on, so that every key is in play.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { DiagnosticsError, formatDiagnostic } from '../../lib/core/errors.js';
import { parseConfig } from '../../lib/daemon/config-loader.js';
import { repoRoot } from '../helpers/paths.js';

const FILE = '/etc/sluice/sluice.yaml';
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 150) * 4;

/** conf/sluice.yaml with the commented-out milter, filter and policyd sections switched on. */
function allDoorsOn(): string {
  const out: string[] = [];
  let inDoor = false;
  for (const line of readFileSync(join(repoRoot, 'conf', 'sluice.yaml'), 'utf8').split('\n')) {
    if (/^# (milter|filter|policyd):/.test(line)) inDoor = true;
    else if (!line.startsWith('#  ')) inDoor = false;
    out.push(inDoor ? line.slice(2) : line);
  }
  return out.join('\n');
}

const BASE = allDoorsOn();
const BASE_LINES = BASE.split('\n');

const JUNK = fc.oneof(
  fc.constantFrom('', '~', 'null', 'true', 'no', '0', '-1', '1e999', '99999999999999999999', '0x10', '3.5', '1KB', '5 minutes', '-5s', '1GB', '[]', '[1, 2]', '{}', '{a: 1}', '"quoted"', "'single'", '*alias', '&anchor x', '!!binary aGk=', '| block', '> folded', '127.0.0.1:99999', '[::1]:25', 'unix:', 'inet:@', '0.0.0.0/33', 'redis://', 'sqlite', 'memory', 'relay', '"0660"', '0o777', 'x'.repeat(5000)),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.integer().map(String),
);

type Edit = (lines: string[]) => string[];

/** Lines that hold a `key: value` pair (outside comments). */
const VALUE_LINES = BASE_LINES.map((l, i) => (/^\s*(-\s+)?[a-z_]+:\s*[^\s#]/.test(l) ? i : -1)).filter((i) => i >= 0);

const EDIT: fc.Arbitrary<Edit> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.nat(), JUNK).map(([n, junk]): Edit => (lines) => {
    const i = VALUE_LINES[n % VALUE_LINES.length]!;
    const out = [...lines];
    out[i] = (lines[i] ?? '').replace(/^(\s*(?:-\s+)?[a-z_]+:)\s*[^#]*/, `$1 ${junk} `);
    return out;
  }) },
  { weight: 2, arbitrary: fc.nat().map((n): Edit => (lines) => lines.filter((_, i) => i !== n % lines.length)) },
  { weight: 1, arbitrary: fc.nat().map((n): Edit => (lines) => { const i = n % lines.length; return [...lines.slice(0, i + 1), lines[i]!, ...lines.slice(i + 1)]; }) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 0, max: 6 }), fc.constantFrom('unknown_key: 1', 'limitz: {}', 'intercept: []', '- listen: x')).map(([n, indent, text]): Edit => (lines) => {
    const i = n % (lines.length + 1);
    return [...lines.slice(0, i), ' '.repeat(indent) + text, ...lines.slice(i)];
  }) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.constantFrom(-2, -1, 1, 2, 4)).map(([n, by]): Edit => (lines) => {
    const i = n % lines.length;
    const out = [...lines];
    out[i] = by > 0 ? ' '.repeat(by) + lines[i] : (lines[i] ?? '').replace(new RegExp(`^ {0,${-by}}`), '');
    return out;
  }) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.string({ maxLength: 40 })).map(([n, text]): Edit => (lines) => {
    const i = n % lines.length;
    return [...lines.slice(0, i), text, ...lines.slice(i + 1)];
  }) },
);

describe('config loader: arbitrary edits of a full configuration (property)', function () {
  this.timeout(120_000);

  it('the base (conf/sluice.yaml with every door on) is itself valid', () => {
    const c = parseConfig(BASE, FILE);
    assert.ok(c.milter && c.filter && c.policyd && c.intercept.length === 1, 'every door is on in the base');
  });

  it('accepts or refuses with positioned, coded diagnostics; never throws anything else', () => {
    let refused = 0;
    fc.assert(
      fc.property(fc.array(EDIT, { minLength: 1, maxLength: 3 }), (edits) => {
        const text = edits.reduce((lines, e) => e(lines), BASE_LINES).join('\n');
        const lineCount = text.split('\n').length;
        const started = Date.now();
        try {
          parseConfig(text, FILE);
        } catch (err) {
          if (!(err instanceof DiagnosticsError)) throw new Error(`the loader threw ${(err as Error).name}: ${(err as Error).message}`);
          refused++;
          assert.ok(err.diagnostics.length > 0, 'a refusal names at least one problem');
          for (const d of err.diagnostics) {
            const shown = formatDiagnostic(d);
            assert.match(d.code, /^config\/[a-z-]+$/, `stable code: ${shown}`);
            assert.ok(d.message.trim().length > 0, `a message: ${shown}`);
            assert.ok(d.location, `a file position: ${shown}`);
            assert.equal(d.location.file, FILE, shown);
            assert.ok(d.location.line >= 1 && d.location.line <= lineCount + 1, `a line inside the file: ${shown}`);
            assert.ok(d.location.column >= 1, `a column: ${shown}`);
            assert.ok(!/\[object Object\]|undefined|NaN/.test(d.message), `no internals in the message: ${shown}`);
          }
        }
        assert.ok(Date.now() - started < 2000, 'bounded time');
      }),
      { numRuns: RUNS },
    );
    assert.ok(refused > RUNS / 4, `only ${refused} of ${RUNS} edits were refused: the edits are too tame`);
  });
});
