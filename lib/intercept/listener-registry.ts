import { networkInterfaces } from 'node:os';
import type { Endpoint } from '../core/stage.js';
import { endpointEquals, isWildcard, normalizeIp } from './address-util.js';

/**
 * The addresses this process listens on (every intercept listener registers itself), so a destination that is
 * one of our own listeners is recognised as a loop, whichever listener accepted the connection.
 */
const own = new Set<Endpoint>();

export function registerOwnAddress(e: Endpoint): () => void {
  const entry: Endpoint = { ip: normalizeIp(e.ip), port: e.port };
  own.add(entry);
  return () => {
    own.delete(entry);
  };
}

/** Addresses of this host's interfaces, normalised. */
export function localInterfaceAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.add(normalizeIp(a.address));
  }
  return out;
}

/** True if `dest` is (or, for wildcard binds, may be) one of our own listening addresses. */
export function isOwnAddress(dest: Endpoint, extra: readonly Endpoint[] = []): boolean {
  const d: Endpoint = { ip: normalizeIp(dest.ip), port: dest.port };
  let locals: Set<string> | undefined;
  for (const e of [...own, ...extra]) {
    if (e.port !== d.port) continue;
    if (isWildcard(e.ip)) {
      locals ??= localInterfaceAddresses();
      if (locals.has(d.ip) || isWildcard(d.ip)) return true;
    } else if (endpointEquals(e, d)) return true;
  }
  return false;
}
