/**
 * One DNS exchange with one server over UDP or TCP: send a query, wait for the answer that matches it.
 * UDP: a fresh socket per query (the kernel picks a random source port), answers accepted only from the
 * server's address and port and only when id and question match (anything else is ignored, not fatal).
 * TCP: two-byte length framing (RFC 1035 §4.2.2), the answer bounded to 65,535 bytes.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, isIP, type Socket as TcpSocket } from 'node:net';
import dnsPacket from 'dns-packet';
import { DNS_ERROR, DnsError } from './dns-types.js';

export interface DnsServer {
  readonly host: string;
  readonly port: number;
}

export interface DnsExchange {
  readonly server: DnsServer;
  /** The encoded query. */
  readonly query: Buffer;
  readonly id: number;
  /** Question name and type the answer must repeat (compared case-insensitively). */
  readonly name: string;
  readonly type: string;
  readonly timeoutMs: number;
}

/** A decoded message, typed loosely: dns-packet's typings lack rcode, flags and per-type data. */
export interface DnsRecordRaw {
  readonly type: string;
  readonly name: string;
  readonly ttl?: number;
  readonly data?: unknown;
}
export interface DnsMessage {
  readonly id?: number;
  readonly type?: string;
  readonly rcode?: string;
  readonly flag_tc?: boolean;
  readonly questions?: readonly { readonly name: string; readonly type: string }[];
  readonly answers?: readonly DnsRecordRaw[];
  readonly authorities?: readonly DnsRecordRaw[];
}

/** Upper bound for an answer on either transport (the TCP length field cannot say more). */
const MAX_MESSAGE = 65_535;

function matches(ex: DnsExchange, p: DnsMessage): boolean {
  if (p.id !== ex.id || p.type !== 'response') return false;
  const q = p.questions?.[0];
  if (q === undefined || (p.questions?.length ?? 0) !== 1) return false;
  return q.type === ex.type && q.name.toLowerCase() === ex.name.toLowerCase();
}

function decode(buf: Buffer): DnsMessage | undefined {
  try {
    return dnsPacket.decode(buf) as unknown as DnsMessage;
  } catch {
    return undefined;
  }
}

/** Parses "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353" into a server address (port 53 by default). */
export function parseServer(spec: string): DnsServer {
  const s = spec.trim();
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) return checked(bracket[1] ?? '', bracket[2]);
  if (isIP(s) === 6) return checked(s, undefined);
  const colon = /^([^:]+):(\d+)$/.exec(s);
  if (colon) return checked(colon[1] ?? '', colon[2]);
  return checked(s, undefined);
}

function checked(host: string, port: string | undefined): DnsServer {
  const p = port === undefined ? 53 : Number(port);
  if (isIP(host) === 0) throw new Error(`DNS server must be an IP address: ${JSON.stringify(host)}`);
  if (!Number.isInteger(p) || p < 1 || p > 65_535) throw new Error(`bad DNS server port: ${String(port)}`);
  return { host, port: p };
}

export function exchangeUdp(ex: DnsExchange): Promise<DnsMessage> {
  return new Promise((resolve, reject) => {
    const sock: UdpSocket = createSocket(isIP(ex.server.host) === 6 ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | undefined, p?: DnsMessage): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(p as DnsMessage);
    };
    const timer = setTimeout(() => finish(new DnsError(DNS_ERROR.ETIMEOUT, ex.name, ex.type)), ex.timeoutMs);
    sock.on('error', (e: NodeJS.ErrnoException) =>
      finish(new DnsError(e.code === 'ECONNREFUSED' ? DNS_ERROR.ECONNREFUSED : DNS_ERROR.ETIMEOUT, ex.name, ex.type)),
    );
    sock.on('message', (msg, rinfo) => {
      if (rinfo.port !== ex.server.port || rinfo.address !== ex.server.host) return; // not our server
      if (msg.length > MAX_MESSAGE) return;
      const p = decode(msg);
      if (p === undefined || !matches(ex, p)) return; // spoofed, stale or garbled: keep waiting
      finish(undefined, p);
    });
    sock.send(ex.query, ex.server.port, ex.server.host, (e) => {
      if (e) finish(new DnsError(DNS_ERROR.ETIMEOUT, ex.name, ex.type));
    });
  });
}

export function exchangeTcp(ex: DnsExchange): Promise<DnsMessage> {
  return new Promise((resolve, reject) => {
    const sock: TcpSocket = connect({ host: ex.server.host, port: ex.server.port });
    let done = false;
    let chunks: Buffer[] = [];
    let have = 0;
    const finish = (err: Error | undefined, p?: DnsMessage): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      chunks = [];
      if (err) reject(err);
      else resolve(p as DnsMessage);
    };
    const timer = setTimeout(() => finish(new DnsError(DNS_ERROR.ETIMEOUT, ex.name, ex.type)), ex.timeoutMs);
    sock.on('error', (e: NodeJS.ErrnoException) =>
      finish(new DnsError(e.code === 'ECONNREFUSED' ? DNS_ERROR.ECONNREFUSED : DNS_ERROR.ETIMEOUT, ex.name, ex.type)),
    );
    sock.on('close', () => finish(new DnsError(DNS_ERROR.EBADRESP, ex.name, ex.type)));
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(ex.query.length, 0);
      sock.write(Buffer.concat([len, ex.query]));
    });
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      have += d.length;
      if (have > MAX_MESSAGE + 2) return finish(new DnsError(DNS_ERROR.EBADRESP, ex.name, ex.type));
      if (have < 2) return;
      const all = chunks.length === 1 ? d : Buffer.concat(chunks);
      chunks = [all];
      const want = all.readUInt16BE(0);
      if (have < want + 2) return;
      const p = decode(all.subarray(2, 2 + want));
      if (p === undefined || !matches(ex, p)) return finish(new DnsError(DNS_ERROR.EBADRESP, ex.name, ex.type));
      finish(undefined, p);
    });
  });
}
