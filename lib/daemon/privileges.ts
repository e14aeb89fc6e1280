/**
 * Dropping root after binding: `user`/`group` from the configuration. The state directory (lock database,
 * quarantine) is handed to that user first, so the unprivileged daemon can still write it. With a transparent or
 * tproxy intercept listener the drop keeps CAP_NET_ADMIN + CAP_NET_RAW (and nothing else): every transparent
 * upstream connect binds the client's address with IP_TRANSPARENT, long after the drop.
 */
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import { dropPrivilegesKeepingNetAdmin, requireNative } from '../intercept/native-sockopt.js';

export interface Account {
  readonly uid: number;
  readonly gid: number;
  readonly name: string;
}

/** Looks a user up in /etc/passwd (name or numeric id). */
export function lookupUser(user: string, passwd = '/etc/passwd'): Account | undefined {
  for (const line of safeRead(passwd).split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || uid === user) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return /^\d+$/.test(user) ? { name: user, uid: Number(user), gid: Number(user) } : undefined;
}

/** Looks a group up in /etc/group (name or numeric id) → gid. */
export function lookupGroup(group: string, file = '/etc/group'): number | undefined {
  for (const line of safeRead(file).split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group || gid === group) return gid === undefined ? undefined : Number(gid);
  }
  return /^\d+$/.test(group) ? Number(group) : undefined;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export interface DropOptions {
  /** Files written after the switch (the log file, reopened on SIGHUP): handed to the user too. */
  readonly files?: readonly string[];
  /** Keep CAP_NET_ADMIN + CAP_NET_RAW across the switch (transparent or tproxy intercept listeners). */
  readonly keepNetAdmin?: boolean;
}

/**
 * Switches to `user` (and `group`, else the user's primary group) when running as root; does nothing otherwise.
 * Throws when the user or group does not exist: running on as root by mistake is worse than not starting.
 */
export function dropPrivileges(user: string | undefined, group: string | undefined, stateDir: string, logger: Logger, options: DropOptions = {}): void {
  const files = options.files ?? [];
  if (user === undefined) return;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    logger.info({ user }, 'not running as root; user/group setting ignored');
    return;
  }
  const account = lookupUser(user);
  if (!account) throw new Error(`user "${user}" does not exist`);
  const gid = group !== undefined ? lookupGroup(group) : account.gid;
  if (gid === undefined) throw new Error(`group "${group}" does not exist`);
  if (existsSync(stateDir)) chownTree(stateDir, account.uid, gid, 2);
  // Files written after the switch (the log file, reopened on SIGHUP) must stay writable.
  for (const f of files) if (existsSync(f)) chownSync(f, account.uid, gid);
  // Load the add-on while still root: after the switch the build directory may be unreadable.
  if (options.keepNetAdmin) requireNative('keeping CAP_NET_ADMIN for transparent intercept listeners');
  const drop = (): void => {
    process.setgroups?.([gid]);
    process.setgid?.(gid);
    process.setuid?.(account.uid);
  };
  if (options.keepNetAdmin) dropPrivilegesKeepingNetAdmin(drop);
  else drop();
  logger.info({ user: account.name, uid: account.uid, gid, ...(options.keepNetAdmin ? { kept: 'CAP_NET_ADMIN,CAP_NET_RAW' } : {}) }, 'dropped privileges');
}

/** chown a directory and its entries, `depth` levels down (the state dir is shallow). */
function chownTree(path: string, uid: number, gid: number, depth: number): void {
  chownSync(path, uid, gid);
  if (depth === 0) return;
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(path, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(path, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid, depth - 1);
    else if (e.isFile()) chownSync(p, uid, gid);
  }
}
