/**
 * HAProxy PROXY protocol v1 (text) and v2 (binary) receiver codec: pure, bounded, never throws on peer bytes.
 * Strict per reference/protocols.md §4: exact spacing, no leading zeros, family must match, CRLF only,
 * v2 signature/version/command/family/length checks, TLVs walked (a malformed TLV list is invalid), CRC32C verified.
 */
import { isIPv6 } from 'node:net';
import { ProtocolError } from '../core/errors.js';
import type { Endpoint } from '../core/stage.js';
import { bytesToIp, ipToBytes, normalizeIp } from './address-util.js';

/** v2 signature "\r\n\r\n\0\r\nQUIT\n". */
export const PP2_SIGNATURE = Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export const PP2_CMD = {
  LOCAL: 0x0, // PP2_CMD_LOCAL
  PROXY: 0x1, // PP2_CMD_PROXY
} as const;

export const PP2_FAM = {
  UNSPEC: 0x0, // AF_UNSPEC
  INET: 0x1, // AF_INET
  INET6: 0x2, // AF_INET6
  UNIX: 0x3, // AF_UNIX
} as const;

export const PP2_TRANS = {
  UNSPEC: 0x0,
  STREAM: 0x1, // SOCK_STREAM
  DGRAM: 0x2, // SOCK_DGRAM
} as const;

export const PP2_TYPE = {
  ALPN: 0x01, // PP2_TYPE_ALPN
  AUTHORITY: 0x02, // PP2_TYPE_AUTHORITY
  CRC32C: 0x03, // PP2_TYPE_CRC32C
  NOOP: 0x04, // PP2_TYPE_NOOP
  UNIQUE_ID: 0x05, // PP2_TYPE_UNIQUE_ID
  SSL: 0x20, // PP2_TYPE_SSL
  NETNS: 0x30, // PP2_TYPE_NETNS
} as const;

/** Address block sizes per v2 family nibble (src addr, dst addr, src port, dst port). */
const PP2_ADDR_LEN: Readonly<Record<number, number>> = { 0x0: 0, 0x1: 12, 0x2: 36, 0x3: 216 };

/** Longest v1 line including CRLF. */
export const PP1_MAX_LENGTH = 107;
/** Our cap on a whole v2 header (16 + len); real ones are far below it (Postfix peeks 536 bytes). */
export const PP2_DEFAULT_MAX_LENGTH = 4096;

export type ProxyFamily = 'tcp4' | 'tcp6' | 'unknown' | 'unspec' | 'other';

export interface ProxyTlv {
  readonly type: number;
  readonly value: Uint8Array;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** 'local': a health check or the proxy's own connection (v2 LOCAL): use the real endpoints. */
  readonly command: 'proxy' | 'local';
  /** 'unknown' = v1 UNKNOWN; 'unspec' = v2 AF_UNSPEC; 'other' = UDP, UNIX or odd transport (not supported). */
  readonly family: ProxyFamily;
  readonly source?: Endpoint;
  readonly destination?: Endpoint;
  readonly tlvs: readonly ProxyTlv[];
}

export type ProxyParseResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'header'; readonly header: ProxyHeader; readonly length: number }
  | { readonly kind: 'error'; readonly error: ProtocolError };

export interface ProxyParseOptions {
  readonly versions?: readonly (1 | 2)[];
  readonly maxV2Length?: number;
}

const fail = (message: string, offset?: number): ProxyParseResult => ({
  kind: 'error',
  error: new ProtocolError(message, 'proxy', offset),
});
const INCOMPLETE: ProxyParseResult = { kind: 'incomplete' };
const V1_PREFIX = 'PROXY ';

/**
 * Parses a PROXY header at the start of `buf`. 'incomplete' means the bytes so far are a valid prefix; the caller
 * must read more (bounded by PP1_MAX_LENGTH / maxV2Length, which this function enforces).
 */
export function parseProxyHeader(buf: Uint8Array, opts: ProxyParseOptions = {}): ProxyParseResult {
  const versions = opts.versions ?? [1, 2];
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === 0x0d && versions.includes(2)) return parseV2(buf, opts.maxV2Length ?? PP2_DEFAULT_MAX_LENGTH);
  if (buf[0] === 0x50 /* P */ && versions.includes(1)) return parseV1(buf);
  return fail('not a PROXY protocol header', 0);
}

// ---------------------------------------------------------------------------------------------------- v1

const V1_IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)){3}$/;
const V1_IPV6_CHARS = /^[0-9A-Fa-f:.]{2,45}$/;
const V1_PORT = /^(0|[1-9]\d{0,4})$/;

function parseV1(buf: Uint8Array): ProxyParseResult {
  const limit = Math.min(buf.length, PP1_MAX_LENGTH);
  let crlf = -1;
  for (let i = 0; i < limit; i++) {
    const c = buf[i] ?? 0;
    if (i < V1_PREFIX.length) {
      if (c !== V1_PREFIX.charCodeAt(i)) return fail('bad v1 signature', i);
      continue;
    }
    if (c === 0x0d) {
      if (i + 1 >= buf.length) return INCOMPLETE;
      if (buf[i + 1] !== 0x0a) return fail('bare CR in v1 header', i);
      crlf = i;
      break;
    }
    if (c === 0x0a) return fail('bare LF in v1 header', i);
    if (c < 0x20 || c > 0x7e) return fail('non-printable byte in v1 header', i);
  }
  if (crlf < 0) return buf.length >= PP1_MAX_LENGTH ? fail('v1 header without CRLF in 107 bytes', PP1_MAX_LENGTH) : INCOMPLETE;
  const line = Buffer.from(buf.subarray(0, crlf)).toString('latin1');
  const length = crlf + 2;
  const fields = line.split(' ');
  const proto = fields[1];
  if (proto === 'UNKNOWN') {
    return { kind: 'header', length, header: { version: 1, command: 'proxy', family: 'unknown', tlvs: [] } };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') return fail('bad v1 protocol', V1_PREFIX.length);
  if (fields.length !== 6) return fail('v1 header needs exactly six space-separated fields', 0);
  const [, , srcIp, dstIp, srcPort, dstPort] = fields as [string, string, string, string, string, string];
  const okIp = proto === 'TCP4' ? (s: string) => V1_IPV4.test(s) : (s: string) => V1_IPV6_CHARS.test(s) && isIPv6(s);
  if (!okIp(srcIp)) return fail('bad v1 source address', 0);
  if (!okIp(dstIp)) return fail('bad v1 destination address', 0);
  const sp = v1Port(srcPort);
  const dp = v1Port(dstPort);
  if (sp === undefined) return fail('bad v1 source port', 0);
  if (dp === undefined) return fail('bad v1 destination port', 0);
  return {
    kind: 'header',
    length,
    header: {
      version: 1,
      command: 'proxy',
      family: proto === 'TCP4' ? 'tcp4' : 'tcp6',
      source: { ip: normalizeIp(canonicalIp(srcIp)), port: sp },
      destination: { ip: normalizeIp(canonicalIp(dstIp)), port: dp },
      tlvs: [],
    },
  };
}

function v1Port(s: string): number | undefined {
  if (!V1_PORT.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function canonicalIp(s: string): string {
  const b = ipToBytes(s);
  return b ? bytesToIp(b) : s;
}

// ---------------------------------------------------------------------------------------------------- v2

function parseV2(buf: Uint8Array, maxLength: number): ProxyParseResult {
  const sigLen = Math.min(buf.length, PP2_SIGNATURE.length);
  for (let i = 0; i < sigLen; i++) if (buf[i] !== PP2_SIGNATURE[i]) return fail('bad v2 signature', i);
  if (buf.length < 13) return INCOMPLETE;
  const verCmd = buf[12] ?? 0;
  if (verCmd >> 4 !== 0x2) return fail('v2 version nibble is not 2', 12);
  const cmd = verCmd & 0x0f;
  if (cmd !== PP2_CMD.LOCAL && cmd !== PP2_CMD.PROXY) return fail('v2 command is neither LOCAL nor PROXY', 12);
  if (buf.length < 14) return INCOMPLETE;
  const famByte = buf[13] ?? 0;
  const fam = famByte >> 4;
  const trans = famByte & 0x0f;
  if (fam > PP2_FAM.UNIX || trans > PP2_TRANS.DGRAM) return fail('v2 family or transport out of range', 13);
  if (buf.length < 16) return INCOMPLETE;
  const len = ((buf[14] ?? 0) << 8) | (buf[15] ?? 0);
  const total = 16 + len;
  if (total > maxLength) return fail('v2 header longer than our limit', 14);
  if (cmd === PP2_CMD.PROXY) {
    const need = PP2_ADDR_LEN[fam] ?? 0;
    if (len < need) return fail('v2 length shorter than the address block', 14);
  }
  if (buf.length < total) return INCOMPLETE;
  const body = buf.subarray(16, total);
  if (cmd === PP2_CMD.LOCAL) {
    return { kind: 'header', length: total, header: { version: 2, command: 'local', family: 'unspec', tlvs: [] } };
  }
  const addrLen = PP2_ADDR_LEN[fam] ?? 0;
  const tlvs = parseTlvs(body.subarray(addrLen), 16 + addrLen);
  if (!Array.isArray(tlvs)) return tlvs;
  const crc = tlvs.find((t) => t.type === PP2_TYPE.CRC32C);
  if (crc) {
    if (crc.value.length !== 4) return fail('v2 CRC32C TLV is not 4 bytes');
    const copy = Uint8Array.from(buf.subarray(0, total));
    const at = crc.value.byteOffset - buf.byteOffset;
    copy.fill(0, at, at + 4);
    const want = ((crc.value[0] ?? 0) << 24 | (crc.value[1] ?? 0) << 16 | (crc.value[2] ?? 0) << 8 | (crc.value[3] ?? 0)) >>> 0;
    if (crc32c(copy) !== want) return fail('v2 CRC32C mismatch');
  }
  let family: ProxyFamily = 'other';
  let source: Endpoint | undefined;
  let destination: Endpoint | undefined;
  if (fam === PP2_FAM.UNSPEC) family = 'unspec';
  else if (trans === PP2_TRANS.STREAM && (fam === PP2_FAM.INET || fam === PP2_FAM.INET6)) {
    const alen = fam === PP2_FAM.INET ? 4 : 16;
    family = fam === PP2_FAM.INET ? 'tcp4' : 'tcp6';
    const src = body.subarray(0, alen);
    const dst = body.subarray(alen, 2 * alen);
    const sp = ((body[2 * alen] ?? 0) << 8) | (body[2 * alen + 1] ?? 0);
    const dp = ((body[2 * alen + 2] ?? 0) << 8) | (body[2 * alen + 3] ?? 0);
    source = { ip: bytesToIp(src), port: sp };
    destination = { ip: bytesToIp(dst), port: dp };
  }
  const header: ProxyHeader = { version: 2, command: 'proxy', family, tlvs, ...(source ? { source } : {}), ...(destination ? { destination } : {}) };
  return { kind: 'header', length: total, header };
}

function parseTlvs(b: Uint8Array, baseOffset: number): ProxyTlv[] | ProxyParseResult {
  const out: ProxyTlv[] = [];
  let i = 0;
  while (i < b.length) {
    if (b.length - i < 3) return fail('truncated v2 TLV', baseOffset + i);
    const type = b[i] ?? 0;
    const len = ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    if (i + 3 + len > b.length) return fail('v2 TLV overruns the header', baseOffset + i);
    out.push({ type, value: b.subarray(i + 3, i + 3 + len) });
    i += 3 + len;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- writers

/** A v1 line for a TCP4/TCP6 or UNKNOWN header (used by tests and benchmarks; sluice never sends PROXY). */
export function serializeProxyV1(h: Pick<ProxyHeader, 'family' | 'source' | 'destination'>): Buffer {
  if (h.family === 'unknown' || !h.source || !h.destination) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const proto = h.family === 'tcp6' ? 'TCP6' : 'TCP4';
  return Buffer.from(`PROXY ${proto} ${h.source.ip} ${h.destination.ip} ${h.source.port} ${h.destination.port}\r\n`, 'latin1');
}

/** A v2 header (PROXY over TCP4/TCP6, or LOCAL), with the given TLVs; `crc` appends a CRC32C TLV. */
export function serializeProxyV2(
  h: Pick<ProxyHeader, 'command' | 'family' | 'source' | 'destination'> & { tlvs?: readonly ProxyTlv[] },
  crc = false,
): Buffer {
  const parts: Buffer[] = [];
  let famByte = 0x00;
  if (h.command === 'proxy' && h.source && h.destination && (h.family === 'tcp4' || h.family === 'tcp6')) {
    const v6 = h.family === 'tcp6';
    famByte = v6 ? 0x21 : 0x11;
    const addrOf = (ip: string): Buffer => {
      const b = ipToBytes(ip) ?? new Uint8Array(v6 ? 16 : 4);
      if (v6 && b.length === 4) return Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...b]);
      return Buffer.from(b);
    };
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(h.source.port, 0);
    ports.writeUInt16BE(h.destination.port, 2);
    parts.push(addrOf(h.source.ip), addrOf(h.destination.ip), ports);
  }
  for (const t of h.tlvs ?? []) {
    const th = Buffer.alloc(3);
    th[0] = t.type;
    th.writeUInt16BE(t.value.length, 1);
    parts.push(th, Buffer.from(t.value));
  }
  if (crc) parts.push(Buffer.from([PP2_TYPE.CRC32C, 0, 4, 0, 0, 0, 0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(16);
  head.set(PP2_SIGNATURE, 0);
  head[12] = 0x20 | (h.command === 'local' ? PP2_CMD.LOCAL : PP2_CMD.PROXY);
  head[13] = famByte;
  head.writeUInt16BE(body.length, 14);
  const all = Buffer.concat([head, body]);
  if (crc) all.writeUInt32BE(crc32c(all), all.length - 4);
  return all;
}

// ---------------------------------------------------------------------------------------------------- CRC32C

let crcTable: Uint32Array | undefined;

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). */
export function crc32c(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = (crcTable[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
