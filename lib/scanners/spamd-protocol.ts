/**
 * The SPAMC/SPAMD protocol (spamd(1), "PROTOCOL"; SpamAssassin's PROTOCOL file).
 * Request:  "<METHOD> SPAMC/1.5\r\n" headers "\r\n" body; Content-length is required.
 * Response: "SPAMD/1.1 0 EX_OK\r\n" headers "\r\n" body; the Spam header reads "True ; 15.0 / 5.0".
 */
export const SPAMC_VERSION = 'SPAMC/1.5';

export const SPAMD_METHODS = {
  /** Score only. */
  CHECK: 'CHECK',
  /** Score and the names of the rules that hit (comma-separated body). */
  SYMBOLS: 'SYMBOLS',
  /** Score and a human-readable report body. */
  REPORT: 'REPORT',
  /** Liveness: "SPAMD/1.5 0 PONG". */
  PING: 'PING',
} as const;
export type SpamdMethod = Exclude<keyof typeof SPAMD_METHODS, 'PING'>;

/** spamd's EX_* status codes (sysexits.h) that can appear in the status line. */
export const SPAMD_STATUS = { EX_OK: 0, EX_USAGE: 64, EX_DATAERR: 65, EX_NOINPUT: 66, EX_NOUSER: 67, EX_UNAVAILABLE: 69, EX_SOFTWARE: 70, EX_TEMPFAIL: 75, EX_NOPERM: 77, EX_CONFIG: 78 } as const;

export interface SpamdResponse {
  readonly version: string;
  readonly status: number;
  readonly message: string;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

export interface SpamHeader {
  readonly isSpam: boolean;
  readonly score: number;
  readonly threshold: number;
}

export function requestHead(method: keyof typeof SPAMD_METHODS, contentLength: number | undefined, user?: string): string {
  let head = `${method} ${SPAMC_VERSION}\r\n`;
  if (contentLength !== undefined) head += `Content-length: ${contentLength}\r\n`;
  if (user !== undefined && /^[A-Za-z0-9._@+-]{1,64}$/.test(user)) head += `User: ${user}\r\n`;
  return head + '\r\n';
}

/** Parses a complete response (the connection has closed or Content-length bytes arrived). Undefined if malformed. */
export function parseSpamdResponse(raw: string): SpamdResponse | undefined {
  const headEnd = raw.indexOf('\r\n\r\n');
  const head = headEnd >= 0 ? raw.slice(0, headEnd) : raw.replace(/\r\n$/, '');
  const body = headEnd >= 0 ? raw.slice(headEnd + 4) : '';
  const lines = head.split('\r\n');
  const m = /^SPAMD\/(\d+\.\d+) (\d+) (.*)$/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  return { version: m[1] as string, status: Number(m[2]), message: m[3] as string, headers, body };
}

/** "True ; 15.0 / 5.0" → {isSpam, score, threshold}. */
export function parseSpamHeader(value: string): SpamHeader | undefined {
  const m = /^(True|False|Yes|No)\s*;\s*(-?\d+(?:\.\d+)?)\s*\/\s*(-?\d+(?:\.\d+)?)$/i.exec(value.trim());
  if (!m) return undefined;
  const flag = (m[1] as string).toLowerCase();
  return { isSpam: flag === 'true' || flag === 'yes', score: Number(m[2]), threshold: Number(m[3]) };
}

/** The SYMBOLS body: "GTUBE,MISSING_DATE" → names (bounded, only rule-name characters). */
export function parseSymbols(body: string): string[] {
  return body
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => /^[A-Za-z0-9_.-]{1,100}$/.test(s))
    .slice(0, 500);
}
