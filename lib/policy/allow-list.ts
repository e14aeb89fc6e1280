import { BlockList, isIP } from 'node:net';

/**
 * Matches lock keys against allow-list entries. Entries are exact keys ("auth:alice", "client:192.0.2.7") or,
 * for clients, CIDR prefixes ("client:192.0.2.0/24", "client:2001:db8::/32").
 */
export class AllowListMatcher {
  private readonly exact = new Set<string>();
  private readonly prefixes = new BlockList();
  private hasPrefixes = false;

  constructor(keys: Iterable<string>) {
    for (const key of keys) this.add(key);
  }

  private add(key: string): void {
    const cidr = parseClientCidr(key);
    if (cidr) {
      this.prefixes.addSubnet(cidr.ip, cidr.bits, cidr.family === 4 ? 'ipv4' : 'ipv6');
      this.hasPrefixes = true;
    } else {
      this.exact.add(key);
    }
  }

  matches(key: string): boolean {
    if (this.exact.has(key)) return true;
    if (!this.hasPrefixes || !key.startsWith('client:')) return false;
    const ip = key.slice('client:'.length);
    const family = isIP(ip);
    if (family === 0) return false;
    return this.prefixes.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** "client:ADDR/BITS" → its parts, or undefined when the key is not a client prefix. */
export function parseClientCidr(key: string): { ip: string; bits: number; family: 4 | 6 } | undefined {
  if (!key.startsWith('client:')) return undefined;
  const body = key.slice('client:'.length);
  const slash = body.lastIndexOf('/');
  if (slash < 0) return undefined;
  const ip = body.slice(0, slash);
  const bitsText = body.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  if (bits > (family === 4 ? 32 : 128)) return undefined;
  return { ip, bits, family: family as 4 | 6 };
}

/** Why a lock or allow key is malformed, or undefined when it is fine. */
export function lockKeyProblem(key: string, allowPrefix = false): string | undefined {
  const colon = key.indexOf(':');
  const subject = colon < 0 ? '' : key.slice(0, colon);
  const value = colon < 0 ? '' : key.slice(colon + 1);
  if (subject !== 'client' && subject !== 'auth') return `lock key "${key}" must start with "client:" or "auth:"`;
  if (value.length === 0 || value.length > 320) return `lock key "${key}" needs a value of 1 to 320 characters`;
  if (/[\0-\x1f\x7f]/.test(value)) return `lock key "${key}" contains control characters`;
  if (subject === 'client') {
    if (isIP(value) !== 0) return undefined;
    if (allowPrefix && parseClientCidr(key)) return undefined;
    return `"${value}" is not an IP address${allowPrefix ? ' or CIDR prefix' : ''}`;
  }
  return undefined;
}
