/**
 * Postfix SMTP access policy delegation wire format (SMTPD_POLICY_README "Protocol description"):
 * a request is `name=value\n` lines ended by an empty line; the answer is `action=VALUE\n\n`.
 * Pure: bytes in, requests or a ProtocolError out. Every size is bounded before anything is kept.
 */
import { ProtocolError } from '../core/errors.js';

export interface PolicyCodecLimits {
  /** Largest request, all lines and newlines included. */
  readonly maxRequestBytes: number;
  /** Most attribute lines in one request. */
  readonly maxAttributes: number;
  /** Longest single line (Postfix: values up to 4 × line_length_limit = 8192 characters). */
  readonly maxLineBytes: number;
}

export const DEFAULT_POLICY_CODEC_LIMITS: PolicyCodecLimits = Object.freeze({
  maxRequestBytes: 64 * 1024,
  maxAttributes: 200,
  maxLineBytes: 8192 + 64,
});

/** One request: attribute name → value (first occurrence wins; names as sent, Postfix sends lower case). */
export type PolicyAttributes = ReadonlyMap<string, string>;

const LF = 0x0a;

/**
 * Incremental request decoder for one connection. `push` bytes as they arrive; it returns the complete requests
 * found so far, or throws ProtocolError when the peer breaks the format or a bound (the caller then closes the
 * connection without answering, which Postfix turns into a retry and then its default action).
 */
export class PolicyRequestDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private lines: string[] = [];
  private requestBytes = 0;

  constructor(private readonly limits: PolicyCodecLimits = DEFAULT_POLICY_CODEC_LIMITS) {}

  /** Bytes held for a request not yet complete. */
  get buffered(): number {
    return this.requestBytes + this.pendingBytes;
  }

  push(chunk: Buffer): PolicyAttributes[] {
    const out: PolicyAttributes[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(LF, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      const lineLen = this.pendingBytes + piece.length;
      if (lineLen > this.limits.maxLineBytes) throw new ProtocolError(`policy request line longer than ${this.limits.maxLineBytes} bytes`, 'policy');
      const line = this.pendingBytes === 0 ? piece : Buffer.concat([...this.pending, piece], lineLen);
      this.pending = [];
      this.pendingBytes = 0;
      start = nl + 1;
      const req = this.line(line);
      if (req) out.push(req);
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0) {
      if (this.pendingBytes + rest.length > this.limits.maxLineBytes) throw new ProtocolError(`policy request line longer than ${this.limits.maxLineBytes} bytes`, 'policy');
      if (this.requestBytes + this.pendingBytes + rest.length > this.limits.maxRequestBytes) throw new ProtocolError(`policy request larger than ${this.limits.maxRequestBytes} bytes`, 'policy');
      // Copy: the socket may reuse its buffer.
      this.pending.push(Buffer.from(rest));
      this.pendingBytes += rest.length;
    }
    return out;
  }

  private line(raw: Buffer): PolicyAttributes | undefined {
    this.requestBytes += raw.length + 1;
    if (this.requestBytes > this.limits.maxRequestBytes) throw new ProtocolError(`policy request larger than ${this.limits.maxRequestBytes} bytes`, 'policy');
    // Postfix sends bare LF; tolerate CRLF from hand-written clients.
    const end = raw.length > 0 && raw[raw.length - 1] === 0x0d ? raw.length - 1 : raw.length;
    if (end === 0) {
      if (this.lines.length === 0) {
        // An empty line with no attributes: Postfix never sends it; treat as an empty request (answered DUNNO).
        this.requestBytes = 0;
        return new Map();
      }
      const attrs = new Map<string, string>();
      for (const l of this.lines) {
        const eq = l.indexOf('=');
        const name = l.slice(0, eq);
        if (!attrs.has(name)) attrs.set(name, l.slice(eq + 1));
      }
      this.lines = [];
      this.requestBytes = 0;
      return attrs;
    }
    const text = raw.toString('utf8', 0, end);
    if (text.includes('\0')) throw new ProtocolError('policy request contains a NUL byte', 'policy');
    const eq = text.indexOf('=');
    if (eq <= 0) throw new ProtocolError('policy request line is not name=value', 'policy');
    if (this.lines.length >= this.limits.maxAttributes) throw new ProtocolError(`policy request has more than ${this.limits.maxAttributes} attributes`, 'policy');
    this.lines.push(text);
    return undefined;
  }
}

/** Serialises one request (for tests and clients): `name=value\n`… `\n`. */
export function encodePolicyRequest(attrs: Iterable<readonly [string, string]>): string {
  let out = '';
  for (const [k, v] of attrs) {
    if (/[=\n\0]/.test(k) || /[\n\0]/.test(v)) throw new Error(`attribute ${JSON.stringify(k)} cannot be encoded`);
    out += `${k}=${v}\n`;
  }
  return out + '\n';
}

/** The answer block for an action value, which must be one line without NUL. */
export function encodePolicyResponse(action: string): string {
  if (/[\r\n\0]/.test(action)) throw new Error('policy action must be one line');
  return `action=${action}\n\n`;
}
