/**
 * The listener skeleton the Postfix-facing doors share (filter door, policy door; the milter server binds with
 * listenOn too): a TCP or unix-socket listen address, a client allow-list for TCP, binding, and the
 * stop-with-drain sequence of Door.stop.
 */
import { BlockList, isIP, type Server } from 'node:net';

export type DoorListen = { readonly kind: 'tcp'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

/** The default allowFrom: loopback only. */
export const LOOPBACK_ONLY: readonly string[] = ['127.0.0.0/8', '::1/128'];

/** An allowFrom list ("127.0.0.0/8", "::1") as a BlockList; throws naming `door` on an entry that is no address or CIDR. */
export function allowList(cidrs: readonly string[], door: string): BlockList {
  const bl = new BlockList();
  for (const c of cidrs) {
    const [addr = '', bits] = c.split('/');
    const family = isIP(addr);
    if (family === 0) throw new Error(`${door} door allowFrom: "${c}" is not an address or CIDR`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) bl.addAddress(addr, type);
    else bl.addSubnet(addr, Number(bits), type);
  }
  return bl;
}

/** True when the peer address (IPv4-mapped IPv6 seen as IPv4) is in the list; an unknown address is not. */
export function isAllowed(bl: BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped ? mapped[1]! : address;
  const family = isIP(ip);
  return family !== 0 && bl.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** A listen address as the doors spell it (the milter door says 'inet' for TCP). */
export type AnyListen = DoorListen | { readonly kind: 'inet'; readonly host: string; readonly port: number };

/** Binds the server; rejects with the listen error (the address in use, a bad path). */
export function listenOn(srv: Server, listen: AnyListen): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    const done = (): void => {
      srv.off('error', reject);
      resolve();
    };
    if (listen.kind === 'unix') srv.listen(listen.path, done);
    else srv.listen(listen.port, listen.host, done);
  });
}

/** The bound address as Door.addresses shows it: "unix:PATH", "HOST:PORT" or "[V6]:PORT" (the real port if 0 was asked). */
export function boundAddress(srv: Server, listen: DoorListen): string {
  if (listen.kind === 'unix') return `unix:${listen.path}`;
  const a = srv.address();
  const port = typeof a === 'object' && a ? a.port : listen.port;
  return isIP(listen.host) === 6 ? `[${listen.host}]:${port}` : `${listen.host}:${port}`;
}

/** A connection a door drains on stop. */
export interface DrainableSession {
  /** Asks it to finish what it is doing and close. */
  drain(): void;
  /** Settles once it is closed. */
  readonly done: Promise<unknown>;
  /** Closes it at once. */
  destroy(): void;
}

/**
 * Door.stop: stops accepting (server.close calls back only once every connection is gone, so it is started
 * first), drains the sessions for up to `drainMs`, destroys what is left, then waits for the close.
 */
export async function closeAndDrain(srv: Server | undefined, sessions: ReadonlySet<DrainableSession>, drainMs: number): Promise<void> {
  const closed = srv ? new Promise<void>((resolve) => srv.close(() => resolve())) : Promise.resolve();
  for (const s of sessions) s.drain();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all([...sessions].map((s) => s.done)), new Promise((r) => (timer = setTimeout(r, drainMs)))]);
  if (timer) clearTimeout(timer);
  for (const s of sessions) s.destroy();
  await closed;
}
