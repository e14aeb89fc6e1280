/**
 * The validated configuration (SluiceConfig). Produced only by the loader (config-loader.ts) from the YAML file:
 * every default applied, every path absolute (relative paths are relative to the config file's directory),
 * every duration in milliseconds and every size in bytes. Door sections are plain data; the composition root maps
 * them onto each door's own options.
 */
import type { Limits } from '../core/limits.js';
import type { Cidr, HostPort, ListenAddress } from './config-units.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
/** How envelope addresses appear in logs: as written, as a salted SHA-256 prefix, or not at all. */
export type AddressLogging = 'plain' | 'hash' | 'off';

export interface LogConfig {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly addresses: AddressLogging;
  /** Salt for `addresses: hash` (so hashes are not a dictionary lookup away); "" = unsalted. */
  readonly hashSalt: string;
  /** Absolute path of a log file (appended to; reopened on SIGHUP), or undefined for standard output. */
  readonly file?: string;
}

export interface LocksConfig {
  readonly store: 'sqlite' | 'memory' | 'redis';
  /** SQLite file (store: sqlite). */
  readonly path: string;
  readonly redis: { readonly url: string; readonly prefix: string };
  readonly sweepInterval: number;
  /** Keys that can never be locked: "client:192.0.2.0/24", "auth:postmaster", or bare IPs/CIDRs (→ client:). */
  readonly allow: readonly string[];
}

export interface DnsConfig {
  /** Resolver addresses (host:port, port 53 if left out); empty = the system's (/etc/resolv.conf). */
  readonly servers: readonly HostPort[];
  readonly timeout: number;
  readonly retries: number;
  readonly cacheSize: number;
}

export interface DnsListConfig {
  /** The name rules use: `dnsbl("spamhaus")`. */
  readonly name: string;
  readonly zone: string;
  /** ip: DNSBL/DNSWL of client addresses; domain: RHSBL of domain names. */
  readonly type: 'ip' | 'domain';
  /** A records that mean "listed": IPv4 addresses, ranges "a-b" or CIDRs. */
  readonly listed: readonly string[];
  /** A records that mean "the list refused the query" (e.g. Spamhaus 127.255.255.0/24): an error, not a listing. */
  readonly errorCodes: readonly string[];
}

export interface SpfConfig {
  readonly enabled: boolean;
  /** Skip SPF for authenticated sessions (submission). */
  readonly skipAuthenticated: boolean;
}

export type ScannerFailure = 'tempfail' | 'accept' | 'reject';

export interface ClamdConfig {
  /** unix socket path or host:port. */
  readonly address: ListenAddress;
  readonly timeout: number;
  /** Messages larger than this are not sent (recorded as skipped). */
  readonly maxSize: number;
}

export interface SpamdConfig {
  readonly address: ListenAddress;
  readonly timeout: number;
  readonly maxSize: number;
  /** Score from which the message counts as spam; undefined = spamd's own verdict. */
  readonly threshold?: number;
  /** spamd user (-u). */
  readonly user?: string;
}

export interface FilterCommandConfig {
  /** argv; never run through a shell. */
  readonly command: readonly string[];
  /** pipe: message on stdin (proxsmtpd FilterType=pipe); file: message in a temp file named by $EMAIL. */
  readonly mode: 'pipe' | 'file';
  readonly timeout: number;
  readonly maxSize: number;
  /** Directory for the temp files of mode file (default: state_dir/tmp). */
  readonly tempDir: string;
}

export interface ScannersConfig {
  readonly clamd?: ClamdConfig;
  readonly spamd?: SpamdConfig;
  readonly filter?: FilterCommandConfig;
  /** What the rules see when a scanner fails is always in scan.failed; this is the door's action if no rule decides. */
  readonly onFailure: ScannerFailure;
  /** Scanner verdict headers on kept messages: off, default names, or renamed / some turned off. */
  readonly verdictHeaders: false | VerdictHeadersConfig;
}

export interface VerdictHeadersConfig {
  readonly virus: string | false;
  readonly spamStatus: string | false;
  readonly spamScore: string | false;
}

export interface HookConfig {
  readonly command: readonly string[];
  readonly timeout: number;
}

export type InterceptMode = 'fixed' | 'tproxy' | 'redirect' | 'proxy';

export interface InterceptListenerConfig {
  /** Label for logs ("intercept" + index unless given). */
  readonly name: string;
  readonly listen: HostPortListen;
  readonly mode: InterceptMode;
  /** Where mode fixed connects (required there; ignored elsewhere). */
  readonly upstream?: HostPort;
  /** Sources allowed to send a PROXY header (mode proxy). */
  readonly proxyTrusted: readonly Cidr[];
  /** Full transparency: connect upstream from the client's address (IP_TRANSPARENT). */
  readonly transparent: boolean;
  /** With transparent: also reuse the client's source port. */
  readonly bindPort: boolean;
  readonly starttls: 'relay' | 'forbid';
  readonly bareLf: 'reject' | 'normalize';
  /** Most header bytes held back while header/eoh rules run (the body always streams; the final dot is held). */
  readonly holdMaxSize: number;
  /** Hold mode: messages up to this size are kept until the eom verdict (header edits, quarantine); 0 = stream. */
  readonly holdMessagesUpTo: number;
  /** Hold mode: held bytes kept in memory per message before spilling to a private file. */
  readonly holdMemory: number;
  /** Hold mode: parent of the private hold spool directory (default state_dir/spool). */
  readonly holdDir?: string;
  /** With scanners: bytes one session may read ahead of a slower upstream (0 = off). */
  readonly scanReadAhead: number;
  /** With scanners: the same, all sessions of this listener together. */
  readonly scanReadAheadTotal: number;
  /** Mode proxy: how long a connection may take to send its complete PROXY header (ms). */
  readonly proxyHeaderTimeout: number;
  /** Most accepted connections still waiting for their destination (PROXY header in flight); more are refused. */
  readonly maxPending: number;
  /** Hold the upstream greeting this long so early talkers show themselves (0 = none). */
  readonly greetDelay: number;
  /**
   * Worker processes running this listener's sessions (1 = in the daemon's own process). With more, the daemon
   * accepts, applies the session limits and hands each connection to the least busy worker.
   */
  readonly workers: number;
}

/** A TCP listen address (the intercept door cannot listen on a unix socket). */
export type HostPortListen = Extract<ListenAddress, { kind: 'tcp' }>;

export interface MilterConfig {
  readonly listen: ListenAddress;
  readonly maxPacket: number;
  readonly timeout: number;
  /** SMFIR_PROGRESS interval while slow work runs. */
  readonly progressInterval: number;
  /** Promise the MTA no reply (SMFIP_NR_*) for events no rule needs (fewer packets; slower with Postfix). */
  readonly noReply: boolean;
  /** Judge CONNECT/HELO/MAIL on arrival but answer at RCPT (like smtpd_delay_reject; default on): fewer round trips. */
  readonly delayReject: boolean;
  /** File mode of a unix listen socket (the MTA's user must be able to connect). */
  readonly socketMode: number;
}

export interface FilterDoorConfig {
  readonly listen: ListenAddress;
  readonly nextHop: HostPort;
  readonly xforward: boolean;
  readonly maxMessageSize: number;
  /** TCP clients allowed to connect (default loopback only: XFORWARD must only be trusted from Postfix). */
  readonly allowFrom: readonly Cidr[];
}

export interface PolicydConfig {
  readonly listen: ListenAddress;
  readonly maxRequest: number;
  /** TCP clients allowed to connect (default loopback only). */
  readonly allowFrom: readonly Cidr[];
  /** What an accept verdict answers: dunno (later restrictions still apply) or ok. */
  readonly acceptAction: 'dunno' | 'ok';
}

export interface SluiceConfig {
  /** Absolute path of the file this was loaded from. */
  readonly file: string;
  readonly hostname: string;
  readonly stateDir: string;
  /** Drop privileges to this user (and group) after binding, when started as root. */
  readonly user?: string;
  readonly group?: string;
  /** Rule files and directories (directories: every *.rules file in them). */
  readonly rules: readonly string[];
  readonly log: LogConfig;
  readonly limits: Limits;
  readonly drainTimeout: number;
  readonly locks: LocksConfig;
  readonly dns: DnsConfig;
  readonly dnsLists: readonly DnsListConfig[];
  readonly spf: SpfConfig;
  readonly scanners: ScannersConfig;
  readonly quarantine: { readonly dir: string };
  readonly hooks: Readonly<Record<string, HookConfig>>;
  readonly intercept: readonly InterceptListenerConfig[];
  readonly milter?: MilterConfig;
  readonly filter?: FilterDoorConfig;
  readonly policyd?: PolicydConfig;
}
