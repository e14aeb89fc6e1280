/**
 * Types shared by the DNS resolver and its users (SPF, DNS lists).
 * Answers carry the record data in a decoded form; TXT keeps its character-strings as raw bytes so that
 * empty strings, empty records and non-ASCII bytes survive untouched (SPF must see them to judge them).
 */

/** The record types the resolver asks for. */
export const DNS_TYPES = ['A', 'AAAA', 'TXT', 'MX', 'PTR', 'CNAME', 'NS', 'SOA'] as const;
export type DnsType = (typeof DNS_TYPES)[number];

/** Response codes (RFC 1035 §4.1.1, RFC 6895). */
export const DNS_RCODE = {
  NOERROR: 0, // no error
  FORMERR: 1, // format error
  SERVFAIL: 2, // server failure
  NXDOMAIN: 3, // name error
  NOTIMP: 4, // not implemented
  REFUSED: 5, // refused
} as const;

export interface MxData {
  readonly preference: number;
  readonly exchange: string;
}

/** Record data by type: addresses and names as strings, TXT as its character-strings (bytes), MX as a pair. */
export interface DnsDataByType {
  A: string;
  AAAA: string;
  TXT: readonly Buffer[];
  MX: MxData;
  PTR: string;
  CNAME: string;
  NS: string;
  SOA: { readonly mname: string; readonly minimum: number };
}

/**
 * The outcome of one lookup that the DNS answered: NOERROR with records, NOERROR without (NODATA),
 * or NXDOMAIN. Failures (timeout, SERVFAIL, REFUSED, bad name) are thrown as DnsError instead.
 */
export interface DnsAnswer<T extends DnsType = DnsType> {
  readonly name: string;
  readonly type: T;
  readonly rcode: 'NOERROR' | 'NXDOMAIN';
  readonly records: readonly DnsDataByType[T][];
  /** Seconds the answer may be cached (positive: min record TTL; negative: RFC 2308 SOA rule). */
  readonly ttl: number;
  /** True when served from the cache. */
  readonly cached: boolean;
}

/** Error codes, named like node:dns's so that code written for it (mailauth) understands them. */
export const DNS_ERROR = {
  ETIMEOUT: 'ETIMEOUT', // no answer within the per-query timeout after all retries
  ESERVFAIL: 'ESERVFAIL', // the server answered SERVFAIL
  EREFUSED: 'EREFUSED', // the server answered REFUSED (or NOTIMP)
  EFORMERR: 'EFORMERR', // the server answered FORMERR, or its answer could not be decoded
  EBADNAME: 'EBADNAME', // the name cannot be put on the wire (label > 63 bytes, name > 255, empty label)
  EBADRESP: 'EBADRESP', // the answer was malformed
  ECONNREFUSED: 'ECONNREFUSED', // the server's port is closed (ICMP or TCP reset)
  ECANCELLED: 'ECANCELLED', // the resolver was closed
  EQUEUEFULL: 'EQUEUEFULL', // too many queries waiting for a slot (the concurrency cap's queue is bounded)
  // node:dns codes for the two negative answers, used only by the node-style adapter
  ENOTFOUND: 'ENOTFOUND', // NXDOMAIN
  ENODATA: 'ENODATA', // NOERROR with no record of the type
} as const;
export type DnsErrorCode = (typeof DNS_ERROR)[keyof typeof DNS_ERROR];

export class DnsError extends Error {
  override readonly name = 'DnsError';
  constructor(
    readonly code: DnsErrorCode,
    readonly hostname: string,
    readonly type: string,
  ) {
    super(`${code} ${type} ${hostname}`);
  }
}

/** What SPF and the DNS list provider need from a resolver (so tests can hand in another one). */
export interface DnsQuerier {
  query<T extends DnsType>(name: string, type: T): Promise<DnsAnswer<T>>;
}
