/**
 * The text log format: one compact line per record, e.g.
 *   2026-11-21T05:40:00.123Z INFO  session started door=intercept session=k3x9 client=192.0.2.7:51234
 * Field values that are not plain words are JSON-quoted, so client text can never forge a line break or a field.
 */

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
/** Fields pino adds that the text format shows elsewhere or drops. */
const SKIP = new Set(['level', 'time', 'msg']);
const PLAIN = /^[A-Za-z0-9_.:/@+\-[\]<>=,]{1,200}$/;
/** Longest rendering of one field value; longer values are cut (logs stay bounded whatever a client sends). */
const MAX_VALUE = 2000;

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
  } else if (typeof v === 'number' || typeof v === 'boolean' || v === null) {
    s = String(v);
  } else if (typeof v === 'object' && v !== null && 'message' in v && 'type' in v && 'stack' in v) {
    // pino's serialised Error: show type and message, not the stack (debug level shows it in json format).
    const e = v as { type: unknown; message: unknown };
    s = JSON.stringify(`${String(e.type)}: ${String(e.message)}`);
  } else {
    s = JSON.stringify(v) ?? 'undefined';
  }
  return s.length > MAX_VALUE ? s.slice(0, MAX_VALUE) + '…' : s;
}

/** Turns a pino JSON line into a text line; anything unparsable is passed through escaped. */
export function textLine(json: string): string {
  try {
    return formatTextRecord(JSON.parse(json) as Record<string, unknown>);
  } catch {
    return JSON.stringify(json.trimEnd()) + '\n';
  }
}
