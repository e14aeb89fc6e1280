/**
 * Milter v6 wire codec: framing, command decoders, reply encoders (and the reverse directions, for tests and
 * MTA-side tools). Pure: bytes in, values or a ProtocolError out. It never throws on peer bytes and never allocates
 * from a length it has not checked against the cap. See protocols.md §1.1–§1.9.
 */
import { ProtocolError } from '../core/errors.js';
import { Cmd, DEFAULT_MAX_PACKET, Family, Reply } from './milter-constants.js';

const PROTOCOL = 'milter';

/** One framed packet: the command/reply byte and its payload (without the length and code). */
export interface MilterPacket {
  readonly code: number;
  readonly payload: Buffer;
}

/**
 * Incremental packet reader. Feed it whatever the socket delivers (any split, several packets per read);
 * `next()` returns a packet, undefined when more bytes are needed, or a ProtocolError (sticky: the stream is
 * unusable after it). The length field is checked against `maxPacket` before any byte of the payload is kept.
 */
export class PacketReader {
  private chunks: Buffer[] = [];
  private total = 0;
  private error: ProtocolError | undefined;
  private offset = 0;

  constructor(readonly maxPacket: number = DEFAULT_MAX_PACKET) {}

  /** Bytes received but not yet returned as packets. */
  get buffered(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (this.error || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  next(): MilterPacket | ProtocolError | undefined {
    if (this.error) return this.error;
    if (this.total < 4) return undefined;
    const len = this.peekLength();
    if (len < 1) return this.fail(`packet length ${len} is below the minimum of 1`);
    if (len > this.maxPacket) return this.fail(`packet length ${len} exceeds the limit of ${this.maxPacket} bytes`);
    if (this.total < 4 + len) return undefined;
    const packet = this.take(4 + len);
    this.offset += 4 + len;
    return { code: packet[4] ?? 0, payload: packet.subarray(5) };
  }

  private fail(message: string): ProtocolError {
    this.error = new ProtocolError(message, PROTOCOL, this.offset);
    this.chunks = [];
    this.total = 0;
    return this.error;
  }

  private peekLength(): number {
    const first = this.chunks[0];
    if (first && first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.alloc(4);
    let filled = 0;
    for (const c of this.chunks) {
      const n = Math.min(4 - filled, c.length);
      c.copy(head, filled, 0, n);
      filled += n;
      if (filled === 4) break;
    }
    return head.readUInt32BE(0);
  }

  /** Removes and returns exactly n buffered bytes (n ≤ total, already bounded by maxPacket + 4). */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.total -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      if (!c) break;
      const k = Math.min(n - filled, c.length);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.total -= n;
    return out;
  }
}

/** Frames one packet: uint32 BE length (code + payload), code, payload. */
export function encodePacket(code: number, payload?: Buffer): Buffer {
  const len = 1 + (payload?.length ?? 0);
  const out = Buffer.allocUnsafe(4 + len);
  out.writeUInt32BE(len, 0);
  out[4] = code;
  if (payload) payload.copy(out, 5);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Commands MTA → filter

export type ConnectFamily = 'inet' | 'inet6' | 'unix' | 'unknown';

export type MilterCommand =
  | { readonly type: 'optneg'; readonly version: number; readonly actions: number; readonly protocol: number }
  | { readonly type: 'macro'; readonly stage: string; readonly macros: ReadonlyArray<readonly [string, string]> }
  | { readonly type: 'connect'; readonly hostname: string; readonly family: ConnectFamily; readonly port: number; readonly address: string }
  | { readonly type: 'helo'; readonly name: string }
  | { readonly type: 'mail'; readonly args: readonly string[] }
  | { readonly type: 'rcpt'; readonly args: readonly string[] }
  | { readonly type: 'data' }
  | { readonly type: 'header'; readonly name: string; readonly value: string }
  | { readonly type: 'eoh' }
  | { readonly type: 'body'; readonly chunk: Buffer }
  | { readonly type: 'eob'; readonly chunk: Buffer }
  | { readonly type: 'abort' }
  | { readonly type: 'quit' }
  | { readonly type: 'quitNc' }
  | { readonly type: 'unknown'; readonly command: string };

/** Splits a payload of NUL-terminated strings; a final unterminated string is accepted (liberal reading). */
export function splitCStrings(buf: Buffer, start = 0): string[] {
  const out: string[] = [];
  let pos = start;
  while (pos < buf.length) {
    const nul = buf.indexOf(0, pos);
    if (nul < 0) {
      out.push(buf.toString('utf8', pos));
      break;
    }
    out.push(buf.toString('utf8', pos, nul));
    pos = nul + 1;
  }
  return out;
}

function perr(message: string): ProtocolError {
  return new ProtocolError(message, PROTOCOL);
}

const FAMILY_BY_BYTE: Record<number, ConnectFamily> = {
  [Family.INET]: 'inet',
  [Family.INET6]: 'inet6',
  [Family.UNIX]: 'unix',
  [Family.UNKNOWN]: 'unknown',
};
const BYTE_BY_FAMILY: Record<ConnectFamily, number> = { inet: Family.INET, inet6: Family.INET6, unix: Family.UNIX, unknown: Family.UNKNOWN };

function decodeConnect(p: Buffer): MilterCommand | ProtocolError {
  const nul = p.indexOf(0);
  if (nul < 0) return perr('SMFIC_CONNECT: host name is not NUL-terminated');
  const hostname = p.toString('utf8', 0, nul);
  if (nul + 1 >= p.length) return perr('SMFIC_CONNECT: address family missing');
  const famByte = p[nul + 1] ?? 0;
  const family = FAMILY_BY_BYTE[famByte];
  if (!family) return perr(`SMFIC_CONNECT: unknown address family 0x${famByte.toString(16)}`);
  if (family === 'unknown') return { type: 'connect', hostname, family, port: 0, address: '' };
  const at = nul + 2;
  if (p.length < at + 2) return perr('SMFIC_CONNECT: port missing');
  const port = p.readUInt16BE(at);
  let end = p.indexOf(0, at + 2);
  if (end < 0) end = p.length;
  let address = p.toString('utf8', at + 2, end);
  // Sendmail writes "IPv6:2001:db8::1"; Postfix writes the bare address. Accept both.
  if (/^ipv6:/i.test(address)) address = address.slice(5);
  return { type: 'connect', hostname, family, port, address };
}

/** Decodes one MTA → filter packet. Unknown command bytes are a ProtocolError (libmilter drops the session too). */
export function decodeCommand(packet: MilterPacket): MilterCommand | ProtocolError {
  const p = packet.payload;
  switch (packet.code) {
    case Cmd.OPTNEG:
      if (p.length < 12) return perr(`SMFIC_OPTNEG: payload is ${p.length} bytes, needs 12`);
      return { type: 'optneg', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8) };
    case Cmd.MACRO: {
      if (p.length < 1) return perr('SMFIC_MACRO: stage byte missing');
      const strs = splitCStrings(p, 1);
      const macros: Array<readonly [string, string]> = [];
      for (let i = 0; i + 1 < strs.length; i += 2) macros.push([strs[i] ?? '', strs[i + 1] ?? '']);
      return { type: 'macro', stage: String.fromCharCode(p[0] ?? 0), macros };
    }
    case Cmd.CONNECT:
      return decodeConnect(p);
    case Cmd.HELO:
      return { type: 'helo', name: splitCStrings(p)[0] ?? '' };
    case Cmd.MAIL:
    case Cmd.RCPT: {
      const args = splitCStrings(p);
      if (args.length === 0) args.push('');
      return packet.code === Cmd.MAIL ? { type: 'mail', args } : { type: 'rcpt', args };
    }
    case Cmd.DATA:
      return { type: 'data' };
    case Cmd.HEADER: {
      const [name, value] = splitCStrings(p);
      if (name === undefined || name === '') return perr('SMFIC_HEADER: header name missing');
      return { type: 'header', name, value: value ?? '' };
    }
    case Cmd.EOH:
      return { type: 'eoh' };
    case Cmd.BODY:
      return { type: 'body', chunk: p };
    case Cmd.BODYEOB:
      return { type: 'eob', chunk: p };
    case Cmd.ABORT:
      return { type: 'abort' };
    case Cmd.QUIT:
      return { type: 'quit' };
    case Cmd.QUIT_NC:
      return { type: 'quitNc' };
    case Cmd.UNKNOWN:
      return { type: 'unknown', command: splitCStrings(p)[0] ?? '' };
    default:
      return perr(`unknown milter command 0x${packet.code.toString(16)}`);
  }
}

function cstr(s: string, what: string): Buffer {
  if (s.includes('\0')) throw new TypeError(`${what} contains a NUL byte`);
  return Buffer.from(s + '\0', 'utf8');
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** Encodes an MTA → filter command (used by tests, benchmarks and MTA-side tools). */
export function encodeCommand(c: MilterCommand): Buffer {
  switch (c.type) {
    case 'optneg':
      return encodePacket(Cmd.OPTNEG, Buffer.concat([u32(c.version), u32(c.actions), u32(c.protocol)]));
    case 'macro':
      return encodePacket(Cmd.MACRO, Buffer.concat([Buffer.from([c.stage.charCodeAt(0) & 0xff]), ...c.macros.flatMap(([n, v]) => [cstr(n, 'macro name'), cstr(v, 'macro value')])]));
    case 'connect': {
      const host = cstr(c.hostname, 'host name');
      if (c.family === 'unknown') return encodePacket(Cmd.CONNECT, Buffer.concat([host, Buffer.from([Family.UNKNOWN])]));
      const port = Buffer.allocUnsafe(2);
      port.writeUInt16BE(c.port & 0xffff, 0);
      return encodePacket(Cmd.CONNECT, Buffer.concat([host, Buffer.from([BYTE_BY_FAMILY[c.family]]), port, cstr(c.address, 'address')]));
    }
    case 'helo':
      return encodePacket(Cmd.HELO, cstr(c.name, 'HELO name'));
    case 'mail':
    case 'rcpt':
      return encodePacket(c.type === 'mail' ? Cmd.MAIL : Cmd.RCPT, Buffer.concat(c.args.map((a) => cstr(a, 'argument'))));
    case 'data':
      return encodePacket(Cmd.DATA);
    case 'header':
      return encodePacket(Cmd.HEADER, Buffer.concat([cstr(c.name, 'header name'), cstr(c.value, 'header value')]));
    case 'eoh':
      return encodePacket(Cmd.EOH);
    case 'body':
      return encodePacket(Cmd.BODY, c.chunk);
    case 'eob':
      return encodePacket(Cmd.BODYEOB, c.chunk);
    case 'abort':
      return encodePacket(Cmd.ABORT);
    case 'quit':
      return encodePacket(Cmd.QUIT);
    case 'quitNc':
      return encodePacket(Cmd.QUIT_NC);
    case 'unknown':
      return encodePacket(Cmd.UNKNOWN, cstr(c.command, 'command'));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Replies filter → MTA

/** A macro list request appended to the OPTNEG reply: SMFIM stage index and space-separated names. */
export interface MacroListRequest {
  readonly stage: number;
  readonly names: string;
}

export type MilterReply =
  | { readonly type: 'accept' }
  | { readonly type: 'continue' }
  | { readonly type: 'discard' }
  | { readonly type: 'reject' }
  | { readonly type: 'tempfail' }
  | { readonly type: 'skip' }
  | { readonly type: 'progress' }
  | { readonly type: 'shutdown' }
  | { readonly type: 'replycode'; readonly text: string }
  | { readonly type: 'addheader'; readonly name: string; readonly value: string }
  | { readonly type: 'insheader'; readonly index: number; readonly name: string; readonly value: string }
  | { readonly type: 'chgheader'; readonly index: number; readonly name: string; readonly value: string }
  | { readonly type: 'addrcpt'; readonly address: string }
  | { readonly type: 'addrcptPar'; readonly address: string; readonly args?: string }
  | { readonly type: 'delrcpt'; readonly address: string }
  | { readonly type: 'chgfrom'; readonly address: string; readonly args?: string }
  | { readonly type: 'quarantine'; readonly reason: string }
  | { readonly type: 'replbody'; readonly chunk: Buffer }
  | { readonly type: 'optneg'; readonly version: number; readonly actions: number; readonly protocol: number; readonly macroLists: readonly MacroListRequest[] }
  | { readonly type: 'setsymlist'; readonly stage: number; readonly names: string };

const SIMPLE_REPLIES = {
  accept: Reply.ACCEPT,
  continue: Reply.CONTINUE,
  discard: Reply.DISCARD,
  reject: Reply.REJECT,
  tempfail: Reply.TEMPFAIL,
  skip: Reply.SKIP,
  progress: Reply.PROGRESS,
  shutdown: Reply.SHUTDOWN,
} as const;

/** Pre-framed packets for the replies without payload (sent on hot paths). */
export const SIMPLE_PACKETS: Readonly<Record<keyof typeof SIMPLE_REPLIES, Buffer>> = Object.freeze(
  Object.fromEntries(Object.entries(SIMPLE_REPLIES).map(([k, v]) => [k, encodePacket(v)])) as Record<keyof typeof SIMPLE_REPLIES, Buffer>,
);

/** Encodes one filter → MTA packet. Throws TypeError for values that cannot be framed (a NUL inside a string). */
export function encodeReply(r: MilterReply): Buffer {
  switch (r.type) {
    case 'accept':
    case 'continue':
    case 'discard':
    case 'reject':
    case 'tempfail':
    case 'skip':
    case 'progress':
    case 'shutdown':
      return SIMPLE_PACKETS[r.type];
    case 'replycode':
      return encodePacket(Reply.REPLYCODE, cstr(r.text, 'reply text'));
    case 'addheader':
      return encodePacket(Reply.ADDHEADER, Buffer.concat([cstr(r.name, 'header name'), cstr(r.value, 'header value')]));
    case 'insheader':
    case 'chgheader':
      return encodePacket(r.type === 'insheader' ? Reply.INSHEADER : Reply.CHGHEADER, Buffer.concat([u32(r.index), cstr(r.name, 'header name'), cstr(r.value, 'header value')]));
    case 'addrcpt':
      return encodePacket(Reply.ADDRCPT, cstr(r.address, 'address'));
    case 'delrcpt':
      return encodePacket(Reply.DELRCPT, cstr(r.address, 'address'));
    case 'addrcptPar':
    case 'chgfrom': {
      const parts = [cstr(r.address, 'address')];
      if (r.args !== undefined) parts.push(cstr(r.args, 'ESMTP arguments'));
      return encodePacket(r.type === 'chgfrom' ? Reply.CHGFROM : Reply.ADDRCPT_PAR, Buffer.concat(parts));
    }
    case 'quarantine':
      return encodePacket(Reply.QUARANTINE, cstr(r.reason, 'quarantine reason'));
    case 'replbody':
      return encodePacket(Reply.REPLBODY, r.chunk);
    case 'optneg':
      return encodePacket(
        Reply.OPTNEG,
        Buffer.concat([u32(r.version), u32(r.actions), u32(r.protocol), ...r.macroLists.flatMap((m) => [u32(m.stage), cstr(m.names, 'macro list')])]),
      );
    case 'setsymlist':
      return encodePacket(Reply.SETSYMLIST, Buffer.concat([u32(r.stage), cstr(r.names, 'macro list')]));
  }
}

function twoStrings(p: Buffer, start: number, what: string): [string, string] | ProtocolError {
  const [a, b] = splitCStrings(p, start);
  if (a === undefined || b === undefined) return perr(`${what}: needs two strings`);
  return [a, b];
}

/** Decodes one filter → MTA packet (the MTA's side; used by tests and the benchmark client). */
export function decodeReply(packet: MilterPacket): MilterReply | ProtocolError {
  const p = packet.payload;
  const simple = (Object.entries(SIMPLE_REPLIES) as Array<[keyof typeof SIMPLE_REPLIES, number]>).find(([, v]) => v === packet.code);
  if (simple) return { type: simple[0] };
  switch (packet.code) {
    case Reply.REPLYCODE:
      return { type: 'replycode', text: splitCStrings(p)[0] ?? '' };
    case Reply.ADDHEADER: {
      const s = twoStrings(p, 0, 'SMFIR_ADDHEADER');
      return s instanceof ProtocolError ? s : { type: 'addheader', name: s[0], value: s[1] };
    }
    case Reply.INSHEADER:
    case Reply.CHGHEADER: {
      if (p.length < 4) return perr('header edit: index missing');
      const s = twoStrings(p, 4, 'header edit');
      if (s instanceof ProtocolError) return s;
      return { type: packet.code === Reply.INSHEADER ? 'insheader' : 'chgheader', index: p.readUInt32BE(0), name: s[0], value: s[1] };
    }
    case Reply.ADDRCPT:
      return { type: 'addrcpt', address: splitCStrings(p)[0] ?? '' };
    case Reply.DELRCPT:
      return { type: 'delrcpt', address: splitCStrings(p)[0] ?? '' };
    case Reply.ADDRCPT_PAR:
    case Reply.CHGFROM: {
      const [address, args] = splitCStrings(p);
      const type = packet.code === Reply.CHGFROM ? 'chgfrom' : 'addrcptPar';
      return args === undefined ? { type, address: address ?? '' } : { type, address: address ?? '', args };
    }
    case Reply.QUARANTINE:
      return { type: 'quarantine', reason: splitCStrings(p)[0] ?? '' };
    case Reply.REPLBODY:
      return { type: 'replbody', chunk: p };
    case Reply.OPTNEG: {
      if (p.length < 12) return perr(`OPTNEG reply: payload is ${p.length} bytes, needs 12`);
      const macroLists: MacroListRequest[] = [];
      let pos = 12;
      while (pos < p.length) {
        if (p.length - pos < 4) return perr('OPTNEG reply: truncated macro list');
        const stage = p.readUInt32BE(pos);
        const nul = p.indexOf(0, pos + 4);
        if (nul < 0) return perr('OPTNEG reply: macro list is not NUL-terminated');
        macroLists.push({ stage, names: p.toString('utf8', pos + 4, nul) });
        pos = nul + 1;
      }
      return { type: 'optneg', version: p.readUInt32BE(0), actions: p.readUInt32BE(4), protocol: p.readUInt32BE(8), macroLists };
    }
    case Reply.SETSYMLIST: {
      if (p.length < 4) return perr('SMFIR_SETSYMLIST: stage missing');
      return { type: 'setsymlist', stage: p.readUInt32BE(0), names: splitCStrings(p, 4)[0] ?? '' };
    }
    default:
      return perr(`unknown milter reply 0x${packet.code.toString(16)}`);
  }
}
