/**
 * EHLO reply editing (RFC 5321 §4.1.1.1): the intercept door removes extensions it cannot relay safely.
 * CHUNKING/BINARYMIME (RFC 3030: BDAT framing we do not parse), XEXCH50, XCLIENT and XFORWARD (only trusted
 * clients may use them, and the client behind us is not one) are always removed; STARTTLS by option.
 * PIPELINING is kept: the relay session keeps a FIFO of outstanding commands.
 */
import type { ParsedReply } from './reply-parser.js';

export const ALWAYS_REMOVED = ['CHUNKING', 'BINARYMIME', 'XEXCH50', 'XCLIENT', 'XFORWARD', 'CHECKPOINT'] as const;

export interface CapabilityEditOptions {
  /** Remove STARTTLS (starttls: forbid). */
  readonly removeStarttls: boolean;
  /** Further keywords to remove (upper case). */
  readonly remove?: readonly string[];
}

export interface EhloCapabilities {
  /** The reply to send to the client. */
  readonly raw: string;
  readonly enhancedStatusCodes: boolean;
  readonly pipelining: boolean;
  readonly starttls: boolean;
  /** AUTH mechanisms offered ("250-AUTH PLAIN LOGIN"; the old "AUTH=" form counts too). */
  readonly auth: readonly string[];
  /** SIZE limit offered, 0 if none or unlimited. */
  readonly size: number;
  /** Keywords removed. */
  readonly removed: readonly string[];
}

/** Edits a 250 EHLO reply. Non-2xx replies are returned unchanged. */
export function editEhloReply(reply: ParsedReply, opts: CapabilityEditOptions): EhloCapabilities {
  const base = { enhancedStatusCodes: false, pipelining: false, starttls: false, auth: [] as string[], size: 0, removed: [] as string[] };
  if (reply.code < 200 || reply.code > 299) return { ...base, raw: reply.raw };
  const remove = new Set<string>([...ALWAYS_REMOVED, ...(opts.remove ?? []), ...(opts.removeStarttls ? ['STARTTLS'] : [])]);
  const rawLines = reply.raw.split('\r\n').filter((l) => l !== '');
  const kept: string[] = [];
  const caps = { ...base };
  rawLines.forEach((raw, i) => {
    const text = raw.slice(4);
    if (i === 0) {
      kept.push(text);
      return;
    }
    const keyword = (text.split(/[ =]/)[0] ?? '').toUpperCase();
    if (remove.has(keyword)) {
      caps.removed.push(keyword);
      return;
    }
    if (keyword === 'ENHANCEDSTATUSCODES') caps.enhancedStatusCodes = true;
    if (keyword === 'PIPELINING') caps.pipelining = true;
    if (keyword === 'STARTTLS') caps.starttls = true;
    if (keyword === 'AUTH') caps.auth.push(...text.slice(5).split(/[ \t]+/).filter((m) => m !== '').map((m) => m.toUpperCase()));
    if (keyword === 'SIZE') {
      const n = Number(text.slice(5).trim());
      if (Number.isSafeInteger(n)) caps.size = n;
    }
    kept.push(text);
  });
  const code = String(reply.code);
  const raw = kept.map((t, i) => `${code}${i === kept.length - 1 ? ' ' : '-'}${t}\r\n`).join('');
  return { ...caps, auth: [...new Set(caps.auth)], raw };
}
