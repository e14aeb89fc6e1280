/**
 * Renders header mutations of kind `add` (and `insert` at index 0) as the first header lines of a message, for
 * the interceptor to write right after the upstream's 354 (smtp-gated's X-NAT-Received place).
 * Values are folded on their own line breaks; CR, LF and NUL can never start a new header or end the block.
 */
import type { HeaderMutation } from '../core/verdict.js';

const NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;
/** Longest header we write (names and values come from rule files, not from clients, but stay bounded). */
const MAX_HEADER = 8192;

export function renderLeadingHeaders(mutations: readonly HeaderMutation[]): { text: string; skipped: HeaderMutation[] } {
  let text = '';
  const skipped: HeaderMutation[] = [];
  for (const m of mutations) {
    const first = m.kind === 'add' || (m.kind === 'insert' && m.index === 0);
    if (!first || !NAME.test(m.name)) {
      skipped.push(m);
      continue;
    }
    const lines = m.value
      .replace(/\0/g, '')
      .split(/\r\n|\r|\n/)
      .map((l) => l.trim())
      .filter((l, i) => i === 0 || l !== '');
    const header = `${m.name}: ${lines.join('\r\n\t')}\r\n`;
    if (header.length > MAX_HEADER) {
      skipped.push(m);
      continue;
    }
    text += header;
  }
  return { text, skipped };
}
