/**
 * Reads and validates a configuration file. The one place that reads sluice.yaml: everything else gets a
 * SluiceConfig. All problems come back at once as a DiagnosticsError (file:line:col, key path, hint).
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, Scalar } from 'yaml';
import { DiagnosticsError, type Diagnostic } from '../core/errors.js';
import { configSchema } from './config-definition.js';
import { INVALID, SchemaContext } from './config-schema.js';
import type { SluiceConfig } from './config-types.js';

/** Largest config file we read; anything bigger is surely a mistake. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

export async function loadConfig(file: string, cwd = process.cwd()): Promise<SluiceConfig> {
  const abs = resolve(cwd, file);
  let source: string;
  try {
    const buf = await readFile(abs);
    if (buf.length > MAX_CONFIG_BYTES) throw new DiagnosticsError([{ code: 'config/too-large', message: `${abs} is ${buf.length} bytes; a configuration file may be at most ${MAX_CONFIG_BYTES}` }]);
    source = buf.toString('utf8');
  } catch (err) {
    if (err instanceof DiagnosticsError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new DiagnosticsError([{ code: 'config/read', message: `cannot read ${abs}: ${e.code === 'ENOENT' ? 'no such file' : e.message}` }]);
  }
  return parseConfig(source, abs);
}

/** Validates configuration text; `file` names it in messages and anchors relative paths. */
export function parseConfig(source: string, file: string): SluiceConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: false });
  const ctx = new SchemaContext(file, source, lineCounter, dirname(file));
  if (doc.errors.length > 0) {
    const lines = source.split(/\r?\n/);
    const diags: Diagnostic[] = doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      const sourceLine = lines[pos.line - 1];
      return {
        code: e.code === 'DUPLICATE_KEY' ? 'config/duplicate-key' : 'config/yaml',
        message: (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, ''),
        location: { file, line: pos.line, column: pos.col },
        ...(sourceLine !== undefined ? { sourceLine } : {}),
      };
    });
    throw new DiagnosticsError(diags);
  }
  const root = doc.contents ?? new Scalar(null);
  const value = configSchema.parse(root, ctx, '');
  if (value === INVALID || ctx.diagnostics.length > 0) {
    throw new DiagnosticsError(ctx.diagnostics.length > 0 ? sortByPosition(ctx.diagnostics) : [{ code: 'config/invalid', message: `${file}: invalid configuration` }]);
  }
  return { file, ...value };
}

function sortByPosition(diags: readonly Diagnostic[]): Diagnostic[] {
  return [...diags].sort((a, b) => (a.location?.line ?? 0) - (b.location?.line ?? 0) || (a.location?.column ?? 0) - (b.location?.column ?? 0));
}
