/**
 * Network-namespace harness for e2e tests (needs root and iproute2). Everything lives inside namespaces created
 * per run with unique names; addresses are checked to be in 198.18.0.0/15 (RFC 2544 benchmarking space) or
 * loopback, so nothing is ever routed outside. `destroy()` kills every process started here and deletes the
 * namespaces (which removes their veth links); call it from an after() hook, it is safe to call twice.
 *
 *   client (198.18.1.2) ──c0/g0── gateway (198.18.1.1 | 198.18.2.1) ──g1/s0── server (198.18.2.2)
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cidrContains, parseCidr } from '../../lib/intercept/address-util.js';

const ALLOWED = ['198.18.0.0/15', '127.0.0.0/8', '::1/128'].map((c) => parseCidr(c)).filter((c) => c !== undefined);

/** Throws unless `addr` ("198.18.1.2/24" or "198.18.1.2") is in the test ranges. */
export function assertTestAddress(addr: string): void {
  const ip = addr.split('/')[0] ?? '';
  if (!ALLOWED.some((c) => cidrContains(c, ip))) throw new Error(`netns harness: ${addr} is outside 198.18.0.0/15 and loopback`);
}

let availability: boolean | undefined;

/** True if we are root and can create a namespace (cached). */
export function netnsAvailable(): boolean {
  if (availability !== undefined) return availability;
  availability = false;
  if (process.getuid?.() !== 0) return false;
  const probe = `slprobe-${randomBytes(3).toString('hex')}`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return false;
  spawnSync('ip', ['netns', 'del', probe]);
  availability = true;
  return true;
}

export function commandAvailable(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd]).status === 0;
}

function run(argv: string[], input?: string): SpawnSyncReturns<string> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('empty argv');
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 30000, ...(input !== undefined ? { input } : {}) });
}

function must(argv: string[], input?: string): string {
  const r = run(argv, input);
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export class Netns {
  private readonly children = new Set<ChildProcess>();
  constructor(readonly name: string) {}

  /** Runs argv inside the namespace, waits; throws on a non-zero exit. */
  must(argv: string[], input?: string): string {
    return must(['ip', 'netns', 'exec', this.name, ...argv], input);
  }

  /** Runs argv inside the namespace and returns the result whatever the exit code. */
  run(argv: string[], input?: string): SpawnSyncReturns<string> {
    return run(['ip', 'netns', 'exec', this.name, ...argv], input);
  }

  /** Async variant of run() (keeps the event loop free for in-process peers). */
  async runAsync(argv: string[], timeoutMs = 30000): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const child = this.spawn(argv);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const status = await new Promise<number | null>((r) => child.once('close', (code: number | null) => r(code)));
    clearTimeout(timer);
    return { status, stdout, stderr };
  }

  /** Starts a long-running process inside the namespace; killed by destroy(). */
  spawn(argv: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Applies an nftables ruleset (from stdin) inside the namespace. */
  nft(ruleset: string): void {
    this.must(['nft', '-f', '-'], ruleset);
  }

  sysctl(key: string, value: string): void {
    this.must(['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  async killAll(): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (const c of this.children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      waits.push(new Promise((r) => c.once('exit', r)));
      c.kill('SIGTERM');
      setTimeout(() => c.kill('SIGKILL'), 1500).unref();
    }
    await Promise.all(waits);
    this.children.clear();
  }
}

export class NetnsSet {
  readonly id = randomBytes(3).toString('hex');
  private readonly all: Netns[] = [];

  /** Creates namespace `sl-<id>-<role>` with loopback up. */
  add(role: string): Netns {
    const ns = new Netns(`sl-${this.id}-${role}`);
    must(['ip', 'netns', 'add', ns.name]);
    this.all.push(ns);
    ns.must(['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces with an address on each end (created directly inside them). */
  link(a: Netns, aIf: string, aAddr: string, b: Netns, bIf: string, bAddr: string): void {
    assertTestAddress(aAddr);
    assertTestAddress(bAddr);
    must(['ip', 'link', 'add', aIf, 'netns', a.name, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
    a.must(['ip', 'addr', 'add', aAddr, 'dev', aIf]);
    b.must(['ip', 'addr', 'add', bAddr, 'dev', bIf]);
    a.must(['ip', 'link', 'set', aIf, 'up']);
    b.must(['ip', 'link', 'set', bIf, 'up']);
  }

  /** A default route inside `ns` via `gw` (which must be a test address in a linked namespace). */
  defaultRoute(ns: Netns, gw: string): void {
    assertTestAddress(gw);
    ns.must(['ip', 'route', 'add', 'default', 'via', gw]);
  }

  async destroy(): Promise<void> {
    for (const ns of this.all) await ns.killAll();
    for (const ns of this.all.splice(0)) run(['ip', 'netns', 'del', ns.name]);
  }
}

export interface GatewayTopology {
  readonly set: NetnsSet;
  readonly client: Netns;
  readonly gateway: Netns;
  readonly server: Netns;
  readonly clientIp: string;
  readonly gatewayClientSideIp: string;
  readonly gatewayServerSideIp: string;
  readonly serverIp: string;
}

/** client ── gateway ── server, routed through the gateway (forwarding on, rp_filter off). */
export function createGatewayTopology(): GatewayTopology {
  const set = new NetnsSet();
  try {
    const client = set.add('c');
    const gateway = set.add('g');
    const server = set.add('s');
    set.link(client, 'c0', '198.18.1.2/24', gateway, 'g0', '198.18.1.1/24');
    set.link(gateway, 'g1', '198.18.2.1/24', server, 's0', '198.18.2.2/24');
    set.defaultRoute(client, '198.18.1.1');
    set.defaultRoute(server, '198.18.2.1');
    gateway.sysctl('net.ipv4.ip_forward', '1');
    for (const k of ['all', 'default', 'lo', 'g0', 'g1']) gateway.sysctl(`net.ipv4.conf.${k}.rp_filter`, '0');
    return {
      set,
      client,
      gateway,
      server,
      clientIp: '198.18.1.2',
      gatewayClientSideIp: '198.18.1.1',
      gatewayServerSideIp: '198.18.2.1',
      serverIp: '198.18.2.2',
    };
  } catch (err) {
    void set.destroy();
    throw err;
  }
}

/** TPROXY on the gateway: port `dport` arriving from the client side goes to local `port`; replies to
 *  transparent sockets are routed locally (fwmark 1 → table 100). */
export function tproxyRuleset(dports: number[], port: number, clientIf = 'g0'): string {
  return `table inet sluice_tproxy {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 1 accept
    iifname "${clientIf}" tcp dport { ${dports.join(', ')} } tproxy ip to :${port} meta mark set 1 accept
  }
}
`;
}

export function policyRouting(ns: Netns): void {
  ns.must(['ip', 'rule', 'add', 'fwmark', '1', 'lookup', '100']);
  ns.must(['ip', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100']);
}

/** REDIRECT on the gateway (conntrack remembers the original destination for SO_ORIGINAL_DST). */
export function redirectRuleset(dports: number[], port: number, clientIf = 'g0'): string {
  return `table ip sluice_redirect {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "${clientIf}" tcp dport { ${dports.join(', ')} } redirect to :${port}
  }
}
`;
}
