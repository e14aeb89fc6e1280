/**
 * The schema of sluice.yaml: every key, its type and its default. conf/sluice.yaml documents the same keys;
 * a spec checks that the two stay in step (every key here appears there).
 */
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { isMap, isSeq, type Node } from 'yaml';
import { DEFAULT_LIMITS, type Limits } from '../core/limits.js';
import { DEFAULT_SCAN_READ_AHEAD, DEFAULT_SCAN_READ_AHEAD_TOTAL } from '../intercept/read-ahead.js';
import { dnsListZoneProblems } from '../policy/dnsbl.js';
import { parseCodeEntry } from '../policy/dnsbl-codes.js';
import {
  bool,
  int,
  INVALID,
  list,
  nonEmptyString,
  num,
  object,
  oneOf,
  oneOrMany,
  optional,
  Problem,
  record,
  required,
  scalar,
  section,
  withDefault,
  type Field,
  type Schema,
  type SchemaContext,
} from './config-schema.js';
import type {
  ClamdConfig,
  DnsConfig,
  DnsListConfig,
  FilterCommandConfig,
  FilterDoorConfig,
  HookConfig,
  HostPortListen,
  InterceptListenerConfig,
  LocksConfig,
  LogConfig,
  MilterConfig,
  PolicydConfig,
  ScannersConfig,
  SluiceConfig,
  SpamdConfig,
  SpfConfig,
  VerdictHeadersConfig,
} from './config-types.js';
import { formatHostPort, parseCidr, parseDuration, parseHostPort, parseListen, parseSize, type Cidr, type HostPort, type ListenAddress } from './config-units.js';

// ---------------------------------------------------------------- value types

export const duration: Schema<number> = scalar('a duration such as 30s or 5m', (v) => {
  if (v === 0) return 0;
  if (typeof v === 'number') return new Problem(`${v} has no unit; write e.g. ${v}s or ${v}ms`);
  if (typeof v !== 'string') return new Problem(`expected a duration such as 30s or 5m, got ${JSON.stringify(v)}`);
  const r = parseDuration(v);
  return typeof r === 'string' ? new Problem(r) : r;
});

export const size: Schema<number> = scalar('a size such as 10MB or a number of bytes', (v) => {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : new Problem(`${v} is not a whole number of bytes`);
  if (typeof v !== 'string') return new Problem(`expected a size such as 10MB, got ${JSON.stringify(v)}`);
  const r = parseSize(v);
  return typeof r === 'string' ? new Problem(r) : r;
});

/** A filesystem path, resolved against the config file's directory. */
export const path: Schema<string> = scalar('a file or directory path', (v, ctx) => {
  if (typeof v !== 'string' || v === '') return new Problem(`expected a path, got ${JSON.stringify(v)}`);
  if (v.includes('\0')) return new Problem('a path cannot contain NUL');
  return resolvePath(v, ctx);
});

function resolvePath(p: string, ctx: SchemaContext): string {
  return isAbsolute(p) ? p : resolve(ctx.baseDir, p);
}

/** A path field whose default is itself relative to the config file's directory. */
function pathWithDefault(p: string): Field<string> {
  return { schema: path, required: false, default: (ctx) => resolvePath(p, ctx) };
}

export const listen: Schema<ListenAddress> = scalar('a listen address such as 127.0.0.1:10025 or unix:/path', (v, ctx) => {
  if (typeof v !== 'string') return new Problem(`expected a listen address such as 127.0.0.1:10025, [::1]:10025 or unix:/run/sluice.sock, got ${JSON.stringify(v)}`);
  const r = parseListen(v);
  if (typeof r === 'string') return new Problem(r);
  return r.kind === 'unix' ? { kind: 'unix', path: resolvePath(r.path, ctx) } : r;
});

export const tcpListen: Schema<HostPortListen> = scalar('a TCP listen address such as 127.0.0.1:10025', (v) => {
  if (typeof v !== 'string') return new Problem(`expected a TCP listen address such as 127.0.0.1:10025, got ${JSON.stringify(v)}`);
  const r = parseListen(v);
  if (typeof r === 'string') return new Problem(r);
  if (r.kind !== 'tcp') return new Problem('this door listens on TCP only; write host:port');
  return r;
});

export function hostPort(defaultPort?: number): Schema<HostPort> {
  return scalar(`host:port${defaultPort ? ` (port ${defaultPort} if left out)` : ''}`, (v) => {
    if (typeof v !== 'string') return new Problem(`expected host:port such as 127.0.0.1:25, got ${JSON.stringify(v)}`);
    let text = v.trim();
    if (defaultPort !== undefined && !/:\d+$/.test(text)) text = text.includes(':') && !text.startsWith('[') ? `[${text}]:${defaultPort}` : `${text}:${defaultPort}`;
    const r = parseHostPort(text);
    return typeof r === 'string' ? new Problem(r) : r;
  });
}

export const cidr: Schema<Cidr> = scalar('an IP address or CIDR prefix', (v) => {
  if (typeof v !== 'string') return new Problem(`expected an IP address or CIDR prefix such as 192.0.2.0/24, got ${JSON.stringify(v)}`);
  const r = parseCidr(v);
  return typeof r === 'string' ? new Problem(r) : r;
});

/** A command line as a list of words (never a shell string). */
export const argv: Schema<string[]> = {
  expected: 'a command as a list of words, e.g. [/usr/bin/logger, -t, sluice]',
  parse(node, ctx, p) {
    if (!isSeq(node)) {
      ctx.error(node, 'config/type', `${p}: expected a command as a list of words, e.g. ["/usr/local/bin/notify", "--host"]`, 'sluice never runs commands through a shell, so a command is written as its argv list');
      return INVALID;
    }
    const r = list(nonEmptyString('a word'), { min: 1 }).parse(node, ctx, p);
    if (r === INVALID) return INVALID;
    const first = r[0] as string;
    if (!isAbsolute(first) && !/^[A-Za-z0-9._+-]+$/.test(first)) {
      ctx.error(node, 'config/value', `${p}: the program "${first}" must be an absolute path or a bare program name`);
      return INVALID;
    }
    return r;
  },
};

const DOMAIN = /^(?=.{1,253}$)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})?\.)*[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})?\.?$/;
const domainName = scalar('a DNS domain name', (v) => (typeof v === 'string' && DOMAIN.test(v) ? v.replace(/\.$/, '').toLowerCase() : new Problem(`${JSON.stringify(v)} is not a DNS domain name`)));

// ---------------------------------------------------------------- sections

const log = object<LogConfig>({
  level: withDefault(oneOf(['debug', 'info', 'warn', 'error'] as const), 'info'),
  format: withDefault(oneOf(['text', 'json'] as const), 'text'),
  addresses: withDefault(oneOf(['plain', 'hash', 'off'] as const), 'plain'),
  hashSalt: withDefault(scalar('a string', (v) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : new Problem('expected a string'))), ''),
  file: optional(path),
});

const count = (max: number): Schema<number> => int(0, max);

const limits = object<Limits>({
  commandLine: withDefault(sizeIn(512, 65536), DEFAULT_LIMITS.commandLine),
  dataLine: withDefault(sizeIn(1000, 1024 * 1024), DEFAULT_LIMITS.dataLine),
  messageSize: withDefault(size, DEFAULT_LIMITS.messageSize),
  recipients: withDefault(int(1, 100_000), DEFAULT_LIMITS.recipients),
  pipelineDepth: withDefault(int(1, 10_000), DEFAULT_LIMITS.pipelineDepth),
  sessions: withDefault(int(1, 1_000_000), DEFAULT_LIMITS.sessions),
  sessionsPerClient: withDefault(count(1_000_000), DEFAULT_LIMITS.sessionsPerClient),
  connectTimeout: withDefault(duration, DEFAULT_LIMITS.connectTimeout),
  idleTimeout: withDefault(duration, DEFAULT_LIMITS.idleTimeout),
  commandTimeout: withDefault(duration, DEFAULT_LIMITS.commandTimeout),
  dataTimeout: withDefault(duration, DEFAULT_LIMITS.dataTimeout),
  takeoverTimeout: withDefault(duration, DEFAULT_LIMITS.takeoverTimeout),
  takeoverCommands: withDefault(int(1, 1000), DEFAULT_LIMITS.takeoverCommands),
  errorBudget: withDefault(int(1, 1000), DEFAULT_LIMITS.errorBudget),
});

function sizeIn(min: number, max: number): Schema<number> {
  return {
    expected: `a size from ${min} to ${max} bytes`,
    parse(node, ctx, p) {
      const r = size.parse(node, ctx, p);
      if (r === INVALID) return INVALID;
      if (r < min || r > max) {
        ctx.error(node, 'config/value', `${p}: ${r} bytes is out of range (${min} to ${max})`);
        return INVALID;
      }
      return r;
    },
  };
}

/** A duration from min to max milliseconds. */
function durationIn(min: number, max: number): Schema<number> {
  return {
    expected: `a duration from ${min}ms to ${max / 1000}s`,
    parse(node, ctx, p) {
      const r = duration.parse(node, ctx, p);
      if (r === INVALID) return INVALID;
      if (r < min || r > max) {
        ctx.error(node, 'config/value', `${p}: ${r}ms is out of range (${min}ms to ${max / 1000}s)`);
        return INVALID;
      }
      return r;
    },
  };
}

const ALLOW_KEY = /^(client|auth):./;
const allowEntry = scalar('a lock key such as client:192.0.2.0/24, auth:user or an IP/CIDR', (v) => {
  if (typeof v !== 'string' || v.trim() === '') return new Problem(`expected an allow-list entry, got ${JSON.stringify(v)}`);
  if (ALLOW_KEY.test(v)) {
    if (v.startsWith('client:')) {
      const c = parseCidr(v.slice(7));
      if (typeof c === 'string') return new Problem(c);
    }
    return v;
  }
  const c = parseCidr(v);
  if (typeof c === 'string') return new Problem(`"${v}" is neither client:ADDRESS[/PREFIX], auth:USER nor an IP address or CIDR prefix`);
  return `client:${v}`;
});

interface RawLocks extends Omit<LocksConfig, 'path'> {
  readonly path?: string;
}
const locks = object<RawLocks>(
  {
    store: withDefault(oneOf(['sqlite', 'memory', 'redis'] as const), 'sqlite'),
    path: optional(path),
    redis: section(
      object<LocksConfig['redis']>({
        url: withDefault(scalar('a redis:// URL', (v) => (typeof v === 'string' && /^rediss?:\/\//.test(v) ? v : new Problem(`expected a redis:// or rediss:// URL, got ${JSON.stringify(v)}`))), 'redis://127.0.0.1:6379'),
        prefix: withDefault(scalar('a key prefix', (v) => (typeof v === 'string' && /^[\x21-\x7e]{0,64}$/.test(v) ? v : new Problem('expected a key prefix of up to 64 printable characters'))), 'sluice:'),
      }),
    ),
    sweepInterval: withDefault(duration, 60_000),
    allow: withDefault(list(allowEntry), []),
  },
  (v, ctx, view) => {
    if (v.sweepInterval < 1000) ctx.error(view.valueNode('sweepInterval') ?? view.node, 'config/value', `${view.pathOf('sweepInterval')}: must be at least 1s`);
  },
);

const dns = object<DnsConfig>({
  servers: withDefault(list(hostPort(53)), []),
  timeout: withDefault(duration, 5000),
  retries: withDefault(int(0, 10), 2),
  cacheSize: withDefault(int(0, 10_000_000), 10_000),
});

/** A DNS list answer code: an IPv4 address, range "a-b" or CIDR (list answers are A records). */
const answerCode = scalar('an IPv4 address, range a-b or CIDR such as 127.0.0.2, 127.0.0.2-127.0.0.11 or 127.0.0.0/8', (v) => {
  if (typeof v !== 'string') return new Problem(`expected an IPv4 address, range or CIDR, got ${JSON.stringify(v)}`);
  const r = parseCodeEntry(v);
  if (typeof r === 'string') return new Problem(r, isIP(v.split('/')[0] ?? '') === 6 ? 'DNS list answers are A records: write IPv4 codes such as 127.0.0.2' : undefined);
  return v.trim();
});

const dnsList = object<DnsListConfig>(
  {
    name: required(scalar('a name such as spamhaus', (v) => (typeof v === 'string' && /^[a-z][a-z0-9_-]{0,63}$/i.test(v) ? v : new Problem(`${JSON.stringify(v)} is not a list name (letters, digits, - and _; starting with a letter)`)))),
    zone: required(domainName),
    type: withDefault(oneOf(['ip', 'domain'] as const), 'ip'),
    listed: withDefault(list(answerCode, { min: 1 }), () => ['127.0.0.0/8']),
    errorCodes: withDefault(list(answerCode), () => ['127.255.255.0/24']),
  },
  (v, ctx, view) => {
    // Whatever else the DNS list provider would refuse at start (e.g. a one-label zone), refused here instead.
    for (const problem of dnsListZoneProblems({ name: v.name, zone: v.zone, kind: v.type, listed: v.listed, errors: v.errorCodes })) {
      const prop = problem.startsWith('zone ') ? 'zone' : problem.startsWith('listed') ? 'listed' : problem.startsWith('errors') ? 'errorCodes' : 'name';
      ctx.error(view.valueNode(prop) ?? view.node, 'config/value', `${view.pathOf(prop)}: ${problem}`);
    }
  },
);

const dnsLists: Schema<DnsListConfig[]> = {
  expected: 'a list of DNS lists',
  keys: dnsList.keys,
  parse(node, ctx, p) {
    const r = list(dnsList).parse(node, ctx, p);
    if (r === INVALID) return INVALID;
    const seen = new Set<string>();
    let ok = true;
    r.forEach((z, i) => {
      if (seen.has(z.name)) {
        ctx.error(isSeq(node) ? (node.items[i] as Node) : node, 'config/conflict', `${p}[${i}].name: the name "${z.name}" is used twice`);
        ok = false;
      }
      seen.add(z.name);
    });
    return ok ? r : INVALID;
  },
};

const spf = object<SpfConfig>({
  enabled: withDefault(bool, true),
  skipAuthenticated: withDefault(bool, true),
});

const clamd = object<ClamdConfig>({
  address: withDefault(listen, { kind: 'unix', path: '/var/run/clamav/clamd.ctl' }),
  timeout: withDefault(duration, 60_000),
  maxSize: withDefault(size, 25 * 1024 * 1024),
});

const spamd = object<SpamdConfig>({
  address: withDefault(listen, { kind: 'tcp', host: '127.0.0.1', port: 783 }),
  timeout: withDefault(duration, 60_000),
  maxSize: withDefault(size, 512 * 1024),
  threshold: optional(num(-1000, 1000)),
  user: optional(nonEmptyString()),
});

interface RawFilterCommand extends Omit<FilterCommandConfig, 'tempDir'> {
  readonly tempDir?: string;
}
const filterCommand = object<RawFilterCommand>({
  command: required(argv),
  mode: withDefault(oneOf(['pipe', 'file'] as const), 'pipe'),
  timeout: withDefault(duration, 30_000),
  maxSize: withDefault(size, 50 * 1024 * 1024),
  tempDir: optional(path),
});

interface RawScanners extends Omit<ScannersConfig, 'filter'> {
  readonly filter?: RawFilterCommand;
}
const headerName = scalar('a header name, or false to leave it out', (v) => {
  if (v === false) return false as const;
  if (typeof v === 'string' && /^[\x21-\x39\x3b-\x7e]{1,76}$/.test(v)) return v;
  return new Problem(`expected a header name (printable ASCII, no colon) or false, got ${JSON.stringify(v)}`);
});
const verdictHeaderNames = object<VerdictHeadersConfig>({
  virus: withDefault(headerName, 'X-Virus-Status'),
  spamStatus: withDefault(headerName, 'X-Spam-Status'),
  spamScore: withDefault(headerName, 'X-Spam-Score'),
});
/** `verdict_headers: true | false | {virus, spam_status, spam_score}`. */
const verdictHeaders: Schema<false | VerdictHeadersConfig> = {
  expected: 'true, false, or a mapping of header names',
  keys: verdictHeaderNames.keys,
  parse(node, ctx, p) {
    if (isMap(node)) return verdictHeaderNames.parse(node, ctx, p);
    const b = bool.parse(node, ctx, p);
    if (b === INVALID) return INVALID;
    return b ? { virus: 'X-Virus-Status', spamStatus: 'X-Spam-Status', spamScore: 'X-Spam-Score' } : false;
  },
};

const scanners = object<RawScanners>({
  clamd: optional(clamd),
  spamd: optional(spamd),
  filter: optional(filterCommand),
  onFailure: withDefault(oneOf(['tempfail', 'accept', 'reject'] as const), 'tempfail'),
  verdictHeaders: withDefault(verdictHeaders, false),
});

const hookObject = object<HookConfig>({
  command: required(argv),
  timeout: withDefault(duration, 30_000),
});
/** A hook is an argv list, or {command: argv, timeout}. */
const hook: Schema<HookConfig> = {
  expected: 'a command (list of words) or {command, timeout}',
  keys: hookObject.keys,
  parse(node, ctx, p) {
    if (isMap(node)) return hookObject.parse(node, ctx, p);
    const r = argv.parse(node, ctx, p);
    return r === INVALID ? INVALID : { command: r, timeout: 30_000 };
  },
};

interface RawListener extends Omit<InterceptListenerConfig, 'name'> {
  readonly name?: string;
}
const interceptListener = object<RawListener>(
  {
    name: optional(scalar('a name', (v) => (typeof v === 'string' && /^[a-z][a-z0-9_-]{0,31}$/i.test(v) ? v : new Problem(`${JSON.stringify(v)} is not a listener name (letters, digits, - and _)`)))),
    listen: required(tcpListen),
    mode: withDefault(oneOf(['fixed', 'tproxy', 'redirect', 'proxy'] as const), 'fixed'),
    upstream: optional(hostPort(25)),
    proxyTrusted: withDefault(list(cidr), []),
    transparent: withDefault(bool, false),
    bindPort: withDefault(bool, false),
    starttls: withDefault(oneOf(['relay', 'forbid'] as const), 'forbid'),
    bareLf: withDefault(oneOf(['reject', 'normalize'] as const), 'reject'),
    holdMaxSize: withDefault(sizeIn(1024, 64 * 1024 * 1024), 256 * 1024),
    holdMessagesUpTo: withDefault(size, 0),
    holdMemory: withDefault(sizeIn(1024, 64 * 1024 * 1024), 64 * 1024),
    holdDir: optional(path),
    scanReadAhead: withDefault(sizeIn(0, 1024 * 1024 * 1024), DEFAULT_SCAN_READ_AHEAD),
    scanReadAheadTotal: withDefault(sizeIn(0, 16 * 1024 * 1024 * 1024), DEFAULT_SCAN_READ_AHEAD_TOTAL),
    proxyHeaderTimeout: withDefault(durationIn(1, 600_000), 5000),
    maxPending: withDefault(int(1, 1_000_000), 1000),
    greetDelay: withDefault(duration, 0),
    workers: withDefault(int(1, 64), 1),
  },
  (v, ctx, view) => {
    const at = (prop: string): Node => view.valueNode(prop) ?? view.node;
    if (isIP(v.listen.host) === 0) ctx.error(at('listen'), 'config/value', `${view.pathOf('listen')}: the intercept door listens on an IP address, not a name ("${v.listen.host}")`);
    if (v.upstream && isIP(v.upstream.host) === 0) ctx.error(at('upstream'), 'config/value', `${view.pathOf('upstream')}: write the upstream as an IP address, not a name ("${v.upstream.host}"); names would be resolved at every connection`);
    if (v.mode === 'fixed' && !v.upstream) ctx.error(view.node, 'config/missing-key', `missing key ${view.pathOf('upstream')}`, 'mode fixed relays every connection to one upstream; write upstream: HOST:PORT');
    if ((v.mode === 'tproxy' || v.mode === 'redirect') && v.upstream) ctx.error(at('upstream'), 'config/conflict', `${view.pathOf('upstream')}: mode ${v.mode} finds the destination itself; only modes fixed and proxy take an upstream`);
    if (v.mode === 'proxy' && v.proxyTrusted.length === 0) ctx.error(view.node, 'config/missing-key', `missing key ${view.pathOf('proxyTrusted')}`, 'mode proxy accepts PROXY headers only from trusted sources; list them (e.g. [127.0.0.1])');
    if (v.mode !== 'proxy' && v.proxyTrusted.length > 0) ctx.error(at('proxyTrusted'), 'config/conflict', `${view.pathOf('proxyTrusted')}: only mode proxy reads PROXY headers`);
    if (v.bindPort && !v.transparent) ctx.error(at('bindPort'), 'config/conflict', `${view.pathOf('bindPort')}: needs transparent: true`);
    if (v.upstream && v.upstream.host === v.listen.host && v.upstream.port === v.listen.port) ctx.error(at('upstream'), 'config/conflict', `${view.pathOf('upstream')}: ${formatHostPort(v.upstream)} is the listener itself (a loop)`);
  },
);

const interceptListeners: Schema<InterceptListenerConfig[]> = {
  expected: 'a list of intercept listeners',
  keys: interceptListener.keys,
  parse(node, ctx, p) {
    // One listener may be written as a mapping instead of a one-item list.
    const r = isMap(node) ? interceptListener.parse(node, ctx, p) : list(interceptListener).parse(node, ctx, p);
    if (r === INVALID) return INVALID;
    const all = Array.isArray(r) ? r : [r];
    const names = new Set<string>();
    let ok = true;
    const out = all.map((l, i) => {
      const name = l.name ?? (all.length === 1 ? 'intercept' : `intercept${i + 1}`);
      if (names.has(name)) {
        ctx.error(isSeq(node) ? (node.items[i] as Node) : node, 'config/conflict', `${p}[${i}].name: the name "${name}" is used twice`);
        ok = false;
      }
      names.add(name);
      return { ...l, name };
    });
    return ok ? out : INVALID;
  },
};

/** A file mode written as an octal string ("0660"): YAML would read a bare 0660 as the decimal 660. */
const fileMode = scalar('an octal file mode such as "0660"', (v) => {
  if (typeof v === 'string' && /^0?[0-7]{3}$/.test(v)) return parseInt(v, 8);
  return new Problem(`expected an octal file mode in quotes such as "0660", got ${JSON.stringify(v)}`, typeof v === 'number' ? 'quote it: YAML reads a bare 0660 as a decimal number' : undefined);
});

function loopback(): Cidr[] {
  return [
    { address: '127.0.0.0', prefix: 8, family: 4 },
    { address: '::1', prefix: 128, family: 6 },
  ];
}

const milter = object<MilterConfig>({
  listen: required(listen),
  maxPacket: withDefault(sizeIn(65535, 64 * 1024 * 1024), 1024 * 1024),
  timeout: withDefault(duration, 600_000),
  progressInterval: withDefault(duration, 10_000),
  noReply: withDefault(bool, false),
  delayReject: withDefault(bool, true),
  socketMode: withDefault(fileMode, 0o660),
});

const filterDoor = object<FilterDoorConfig>({
  listen: required(listen),
  nextHop: required(hostPort(25)),
  xforward: withDefault(bool, true),
  maxMessageSize: withDefault(size, DEFAULT_LIMITS.messageSize),
  allowFrom: withDefault(list(cidr, { min: 1 }), loopback),
});

const policyd = object<PolicydConfig>({
  listen: required(listen),
  maxRequest: withDefault(sizeIn(1024, 1024 * 1024), 64 * 1024),
  allowFrom: withDefault(list(cidr, { min: 1 }), loopback),
  acceptAction: withDefault(oneOf(['dunno', 'ok'] as const), 'dunno'),
});

const hostnameSchema = scalar('a host name', (v) => {
  if (typeof v !== 'string' || !DOMAIN.test(v) || v.length > 253) return new Problem(`${JSON.stringify(v)} is not a host name`);
  return v;
});

const account = scalar('a user or group name or numeric id', (v) => {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return String(v);
  if (typeof v === 'string' && /^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(v)) return v;
  return new Problem(`${JSON.stringify(v)} is not a user or group name`);
});

interface RawConfig extends Omit<SluiceConfig, 'file' | 'locks' | 'scanners' | 'quarantine'> {
  readonly locks: RawLocks;
  readonly scanners: RawScanners;
  readonly quarantine: { readonly dir?: string };
}

const raw = object<RawConfig>(
  {
    hostname: withDefault(hostnameSchema, () => osHostname()),
    stateDir: pathWithDefault('.state'),
    user: optional(account),
    group: optional(account),
    rules: withDefault(oneOrMany(path), []),
    log: section(log),
    limits: section(limits),
    drainTimeout: withDefault(duration, 30_000),
    locks: section(locks),
    dns: section(dns),
    dnsLists: withDefault(dnsLists, []),
    spf: section(spf),
    scanners: section(scanners),
    quarantine: section(object<{ dir?: string }>({ dir: optional(path) })),
    hooks: withDefault(record(hook, /^[a-z][a-z0-9_-]{0,63}$/i, 'hook names'), {}),
    intercept: withDefault(interceptListeners, []),
    milter: optional(milter),
    filter: optional(filterDoor),
    policyd: optional(policyd),
  },
  (v, ctx, view) => {
    if (v.intercept.length === 0 && !v.milter && !v.filter && !v.policyd) {
      ctx.error(view.node, 'config/no-door', 'no door is enabled', 'configure at least one of intercept, milter, filter or policyd');
    }
    if (v.group && !v.user) ctx.error(view.valueNode('group') ?? view.node, 'config/conflict', 'group: needs user as well');
    // Two listeners on one address would fail at bind time; say so now.
    const seen = new Map<string, string>();
    const claim = (addr: ListenAddress, who: string, prop: string): void => {
      if (addr.kind === 'tcp' && addr.port === 0) return;
      const key = addr.kind === 'unix' ? `unix:${addr.path}` : `${addr.host}:${addr.port}`;
      const other = seen.get(key);
      if (other) ctx.error(view.valueNode(prop) ?? view.node, 'config/conflict', `${who}.listen: the address is already used by ${other}`);
      else seen.set(key, who);
    };
    v.intercept.forEach((l, i) => claim(l.listen, `intercept[${i}]`, 'intercept'));
    const pooled = v.intercept.find((l) => l.workers > 1);
    if (pooled && v.locks.store === 'memory') {
      ctx.error(view.valueNode('intercept') ?? view.node, 'config/conflict', `intercept listener "${pooled.name}": workers: ${pooled.workers} needs a lock store the processes share`, 'set locks.store to sqlite (the default) or redis');
    }
    if (v.milter) claim(v.milter.listen, 'milter', 'milter');
    if (v.filter) claim(v.filter.listen, 'filter', 'filter');
    if (v.policyd) claim(v.policyd.listen, 'policyd', 'policyd');
  },
  'a mapping of configuration keys',
);

/** The whole file; `file` is filled in by the loader. */
export const configSchema: Schema<Omit<SluiceConfig, 'file'>> = {
  expected: raw.expected,
  keys: raw.keys,
  parse(node, ctx, p) {
    const r = raw.parse(node, ctx, p);
    if (r === INVALID) return INVALID;
    const state = r.stateDir;
    const join = (name: string): string => resolve(state, name);
    return {
      ...r,
      locks: { ...r.locks, path: r.locks.path ?? join('locks.sqlite') },
      scanners: {
        ...r.scanners,
        ...(r.scanners.filter ? { filter: { ...r.scanners.filter, tempDir: r.scanners.filter.tempDir ?? join('tmp') } } : {}),
      } as ScannersConfig,
      quarantine: { dir: r.quarantine.dir ?? join('quarantine') },
    };
  },
};
