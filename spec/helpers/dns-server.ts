/**
 * A small authoritative DNS server for tests, serving a zone given as data over UDP and TCP on loopback.
 * Switches (changeable while it runs): `silent` (never answers: timeouts), `truncateUdp` (every UDP answer
 * comes back empty with TC set, forcing TCP), `servfail` (every answer is SERVFAIL), `delayMs`.
 * Zone semantics follow the openspf test-suite drivers: a name may hold a `TIMEOUT` entry (queries for a
 * type with no record before it are not answered) and a record whose type is `TIMEOUT` for one qtype only.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import dnsPacket from 'dns-packet';

export type TestRecord =
  | { readonly type: 'A' | 'AAAA' | 'PTR' | 'CNAME' | 'NS'; readonly data: string; readonly ttl?: number }
  | { readonly type: 'TXT'; readonly data: string | readonly string[]; readonly ttl?: number }
  | { readonly type: 'MX'; readonly data: { preference: number; exchange: string }; readonly ttl?: number }
  /** No answer for queries of `qtype` (or of any type with no record listed before this entry). */
  | { readonly type: 'TIMEOUT'; readonly qtype?: string }
  | { readonly type: 'SERVFAIL'; readonly qtype?: string };

export type TestZone = Record<string, readonly TestRecord[]>;

export interface TestDnsServerOptions {
  readonly zone?: TestZone;
  readonly host?: string;
  /** TTL of records without their own (default 300). */
  readonly ttl?: number;
  /** SOA MINIMUM and TTL for negative answers (default 60); set -1 to send no SOA. */
  readonly negativeTtl?: number;
}

export interface SeenQuery {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  readonly id: number;
  readonly port: number;
}

const SOA_NAME = 'test.';

/** Splits long TXT strings into 255-byte character-strings; latin-1 when every code point fits in a byte. */
function txtData(data: string | readonly string[]): Buffer[] {
  const parts = typeof data === 'string' ? [data] : [...data];
  const out: Buffer[] = [];
  for (const s of parts) {
    // eslint-disable-next-line no-control-regex
    const buf = /^[\u0000-\u00ff]*$/.test(s) ? Buffer.from(s, 'latin1') : Buffer.from(s, 'utf8');
    if (buf.length === 0) out.push(buf);
    for (let i = 0; i < buf.length; i += 255) out.push(buf.subarray(i, i + 255));
  }
  return out;
}

export class TestDnsServer {
  silent = false;
  truncateUdp = false;
  servfail = false;
  delayMs = 0;
  readonly seen: SeenQuery[] = [];
  /** Highest number of queries being delayed at the same moment (for concurrency tests). */
  maxPending = 0;
  private pending = 0;
  private zone = new Map<string, readonly TestRecord[]>();
  private udp: UdpSocket | undefined;
  private tcp: Server | undefined;
  private readonly tcpSockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  port = 0;
  readonly host: string;
  private readonly ttl: number;
  private readonly negativeTtl: number;

  constructor(options: TestDnsServerOptions = {}) {
    this.host = options.host ?? '127.0.0.1';
    this.ttl = options.ttl ?? 300;
    this.negativeTtl = options.negativeTtl ?? 60;
    this.setZone(options.zone ?? {});
  }

  /** "127.0.0.1:port", as the resolver's `servers` option takes it. */
  get address(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  setZone(zone: TestZone): void {
    this.zone = new Map(Object.entries(zone).map(([k, v]) => [k.toLowerCase().replace(/\.$/, ''), v]));
  }

  async start(): Promise<this> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = createSocket(this.host.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, this.host, () => resolve());
      });
      const port = udp.address().port;
      const tcp = createServer((s) => this.onTcp(s));
      const ok = await new Promise<boolean>((resolve) => {
        tcp.once('error', () => resolve(false));
        tcp.listen(port, this.host, () => resolve(true));
      });
      if (!ok) {
        udp.close();
        continue;
      }
      this.udp = udp;
      this.tcp = tcp;
      this.port = port;
      udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo.address, rinfo.port));
      return this;
    }
    throw new Error('no free port pair for the test DNS server');
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.tcpSockets) s.destroy();
    await Promise.all([
      new Promise<void>((r) => (this.udp ? this.udp.close(() => r()) : r())),
      new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r())),
    ]);
  }

  private later(fn: () => void): void {
    if (this.delayMs <= 0) return fn();
    this.pending++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.pending--;
      fn();
    }, this.delayMs);
    this.timers.add(t);
  }

  private onUdp(msg: Buffer, address: string, port: number): void {
    const q = this.decode(msg);
    if (!q) return;
    const question = q.questions?.[0];
    this.seen.push({ name: question?.name ?? '', type: question?.type ?? '', transport: 'udp', id: q.id ?? 0, port });
    const answer = this.answer(q);
    if (answer === undefined) return;
    const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
    const limit = Math.max(512, opt?.udpPayloadSize ?? 512);
    let buf = dnsPacket.encode(answer);
    if (this.truncateUdp || buf.length > limit) {
      buf = dnsPacket.encode({ ...answer, flags: (answer.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] });
    }
    this.later(() => this.udp?.send(buf, port, address));
  }

  private onTcp(s: Socket): void {
    this.tcpSockets.add(s);
    s.on('close', () => this.tcpSockets.delete(s));
    s.on('error', () => s.destroy());
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < len + 2) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const q = this.decode(msg);
        if (!q) return void s.destroy();
        const question = q.questions?.[0];
        this.seen.push({ name: question?.name ?? '', type: question?.type ?? '', transport: 'tcp', id: q.id ?? 0, port: s.remotePort ?? 0 });
        const answer = this.answer(q);
        if (answer === undefined) continue;
        const out = dnsPacket.encode(answer);
        const len2 = Buffer.alloc(2);
        len2.writeUInt16BE(out.length, 0);
        this.later(() => {
          if (!s.destroyed) s.write(Buffer.concat([len2, out]));
        });
      }
    });
  }

  private decode(msg: Buffer): dnsPacket.Packet | undefined {
    try {
      return dnsPacket.decode(msg);
    } catch {
      return undefined;
    }
  }

  /** The response packet, or undefined for "do not answer". */
  private answer(q: dnsPacket.Packet): dnsPacket.Packet | undefined {
    if (this.silent) return undefined;
    const question = q.questions?.[0];
    if (!question) return undefined;
    const base = {
      type: 'response' as const,
      id: q.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED),
      questions: [question],
    };
    if (this.servfail) return { ...base, flags: base.flags | 2 } as dnsPacket.Packet; // rcode SERVFAIL
    const result = this.lookup(question.name, question.type, 0);
    if (result === 'timeout') return undefined;
    if (result === 'servfail') return { ...base, flags: base.flags | 2 } as dnsPacket.Packet;
    const soa =
      this.negativeTtl < 0
        ? []
        : [
            {
              type: 'SOA' as const,
              name: SOA_NAME,
              ttl: this.negativeTtl,
              data: { mname: 'ns.test', rname: 'hostmaster.test', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: this.negativeTtl },
            },
          ];
    if (result === 'nxdomain') return { ...base, flags: base.flags | 3, authorities: soa } as dnsPacket.Packet;
    return { ...base, answers: result, authorities: result.length === 0 ? soa : [] } as dnsPacket.Packet;
  }

  private lookup(name: string, type: string, depth: number): dnsPacket.Answer[] | 'timeout' | 'servfail' | 'nxdomain' {
    const key = name.toLowerCase().replace(/\.$/, '');
    const entries = this.zone.get(key);
    if (entries === undefined) return 'nxdomain';
    const out: dnsPacket.Answer[] = [];
    let sawType = false;
    for (const e of entries) {
      if (e.type === 'TIMEOUT' || e.type === 'SERVFAIL') {
        const hit = e.qtype === undefined ? !sawType : e.qtype === type;
        if (hit) return e.type === 'TIMEOUT' ? 'timeout' : 'servfail';
        if (e.qtype === undefined) break;
        continue;
      }
      if (e.type === 'CNAME' && type !== 'CNAME') {
        out.push({ type: 'CNAME', name, ttl: e.ttl ?? this.ttl, data: e.data.replace(/\.$/, '') } as dnsPacket.Answer);
        if (depth >= 8) return out; // a loop: hand back what we have
        const rest = this.lookup(e.data, type, depth + 1);
        if (Array.isArray(rest)) out.push(...rest);
        return out;
      }
      if (e.type !== type) continue;
      sawType = true;
      const ttl = e.ttl ?? this.ttl;
      if (e.type === 'TXT') out.push({ type: 'TXT', name, ttl, data: txtData(e.data) } as dnsPacket.Answer);
      else if (e.type === 'MX') out.push({ type: 'MX', name, ttl, data: { preference: e.data.preference, exchange: e.data.exchange.replace(/\.$/, '') } } as dnsPacket.Answer);
      else out.push({ type: e.type, name, ttl, data: e.data.replace(/\.$/, '') } as dnsPacket.Answer);
    }
    return out;
  }
}

/** Starts a server for the zone; call `stop()` in an after hook. */
export async function startTestDnsServer(options: TestDnsServerOptions = {}): Promise<TestDnsServer> {
  return await new TestDnsServer(options).start();
}
