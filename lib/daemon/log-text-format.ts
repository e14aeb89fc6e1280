/**
 * The text log format: one compact line per record, e.g.
 *   2026-11-21T05:40:00.123Z INFO  session started door=intercept session=k3x9 client=192.0.2.7:51234
 * Field values that are not plain words are JSON-quoted, so client text can never forge a line break or a field.
 */

import type { Logger } from '../core/logger.js';

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
/** Fields pino adds that the text format shows elsewhere or drops. */
const SKIP = new Set(['level', 'time', 'msg']);
const PLAIN = /^[A-Za-z0-9_.:/@+\-[\]<>=,]{1,200}$/;
/** Longest rendering of one field value; longer values are cut (logs stay bounded whatever a client sends). */
const MAX_VALUE = 2000;

/** Renders a pino JSON record (e.g. a line of a json-format log) in the text format. */
export function formatTextRecord(rec: Record<string, unknown>): string {
  const time = typeof rec['time'] === 'number' ? new Date(rec['time']).toISOString() : typeof rec['time'] === 'string' ? rec['time'] : new Date().toISOString();
  const level = LEVEL_NAMES[typeof rec['level'] === 'number' ? rec['level'] : 30] ?? 'INFO ';
  const msg = typeof rec['msg'] === 'string' ? rec['msg'] : '';
  let line = `${time} ${level} ${renderValue(msg, true)}`;
  for (const [k, v] of Object.entries(rec)) {
    if (SKIP.has(k) || v === undefined) continue;
    line += ` ${k}=${renderValue(v, false)}`;
  }
  return line + '\n';
}

function renderValue(v: unknown, isMessage: boolean): string {
  let s: string;
  if (typeof v === 'string') {
    if (isMessage) return JSON.stringify(v).slice(1, -1).slice(0, MAX_VALUE);
    s = PLAIN.test(v) ? v : JSON.stringify(v);
  } else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' || v === null) {
    s = String(v);
  } else if (v instanceof Error) {
    s = JSON.stringify(`${v.name}: ${v.message}`);
  } else if (typeof v === 'object' && v !== null && 'message' in v && 'type' in v && 'stack' in v) {
    // pino's serialised Error: show type and message, not the stack (debug level shows it in json format).
    const e = v as { type: unknown; message: unknown };
    s = JSON.stringify(`${String(e.type)}: ${String(e.message)}`);
  } else {
    try {
      s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x)) ?? 'undefined';
    } catch {
      s = '"[unserialisable]"';
    }
  }
  return s.length > MAX_VALUE ? s.slice(0, MAX_VALUE) + '…' : s;
}

/** " k=v k2=v2" for a record's fields (bindings are rendered once, when a child logger is made). */
function renderFields(obj: object): string {
  let out = '';
  for (const k in obj) {
    if (!Object.prototype.hasOwnProperty.call(obj, k)) continue;
    const v = (obj as Record<string, unknown>)[k];
    if (v === undefined) continue;
    out += ` ${k}=${renderValue(v, false)}`;
  }
  return out;
}

const TEXT_LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;
export type TextLevel = keyof typeof TEXT_LEVELS;

interface TextShared {
  threshold: number;
  readonly write: (line: string) => void;
}

/**
 * The text format's logger, written directly (no JSON round trip through pino): same Logger interface, same
 * line shape as formatTextRecord. A child's bindings are rendered once; a disabled level is one comparison.
 */
class TextLogger implements Logger {
  constructor(
    private readonly shared: TextShared,
    private readonly bound: string,
  ) {}
  debug(obj: object, msg?: string): void {
    if (this.shared.threshold <= 20) this.emit('DEBUG', obj, msg);
  }
  info(obj: object, msg?: string): void {
    if (this.shared.threshold <= 30) this.emit('INFO ', obj, msg);
  }
  warn(obj: object, msg?: string): void {
    if (this.shared.threshold <= 40) this.emit('WARN ', obj, msg);
  }
  error(obj: object, msg?: string): void {
    if (this.shared.threshold <= 50) this.emit('ERROR', obj, msg);
  }
  child(bindings: object): Logger {
    return new TextLogger(this.shared, this.bound + renderFields(bindings));
  }
  isLevelEnabled(level: string): boolean {
    const n = TEXT_LEVELS[level as TextLevel];
    return n !== undefined && n >= this.shared.threshold;
  }
  private emit(label: string, obj: object, msg: string | undefined): void {
    this.shared.write(`${new Date().toISOString()} ${label} ${renderValue(msg ?? '', true)}${this.bound}${renderFields(obj)}\n`);
  }
}

export function createTextLogger(level: TextLevel, write: (line: string) => void): { logger: Logger; setLevel(level: TextLevel): void } {
  const shared: TextShared = { threshold: TEXT_LEVELS[level], write };
  return {
    logger: new TextLogger(shared, ''),
    setLevel: (l) => {
      shared.threshold = TEXT_LEVELS[l];
    },
  };
}
