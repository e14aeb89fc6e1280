/**
 * The clamd wire protocol (clamd(8), "COMMANDS"): the `z` prefix makes every command and reply NUL-terminated.
 * INSTREAM sends chunks as <4-byte big-endian length><bytes>, ended by a zero-length chunk.
 */
export const CLAMD_COMMANDS = {
  /** zPING\0 → "PONG\0" */
  PING: 'zPING\0',
  /** zVERSION\0 → "ClamAV 1.4.6/27000/...\0" */
  VERSION: 'zVERSION\0',
  /** zINSTREAM\0 then chunks, then a zero-length chunk → "stream: OK\0" | "stream: <name> FOUND\0" | "... ERROR\0" */
  INSTREAM: 'zINSTREAM\0',
} as const;

/** Longest reply we accept from clamd (a virus name plus framing fits easily). */
export const CLAMD_MAX_REPLY = 4096;

export type ClamdVerdict =
  | { readonly kind: 'clean' }
  | { readonly kind: 'virus'; readonly name: string }
  /** clamd refused the stream because it passed its StreamMaxLength. */
  | { readonly kind: 'size-limit'; readonly message: string }
  | { readonly kind: 'error'; readonly message: string };

/** The frame header for one INSTREAM chunk (length 0 = end of stream). */
export function instreamChunkHeader(length: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(length, 0);
  return b;
}

/** Parses one clamd scan reply (without or with its trailing NUL/newline). Never throws. */
export function parseClamdScanReply(raw: string): ClamdVerdict {
  const text = raw.replace(/[\0\r\n]+$/, '');
  // "stream: OK", "stream: Eicar-Signature FOUND", "INSTREAM size limit exceeded. ERROR", "<reason> ERROR"
  const body = text.replace(/^(?:\d+: )?stream: /, '');
  if (body === 'OK') return { kind: 'clean' };
  const found = /^(.+) FOUND$/.exec(body);
  if (found && found[1]) return { kind: 'virus', name: found[1].slice(0, 200) };
  if (/size limit exceeded/i.test(body)) return { kind: 'size-limit', message: body.slice(0, 200) };
  if (/ ERROR$/.test(body)) return { kind: 'error', message: body.replace(/ ERROR$/, '').slice(0, 200) };
  return { kind: 'error', message: `unexpected clamd reply: ${JSON.stringify(text.slice(0, 200))}` };
}
