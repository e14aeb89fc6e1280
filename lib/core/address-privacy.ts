/**
 * How envelope addresses appear in logs: as written ("plain"), as a salted SHA-256 prefix ("hash": the same
 * address always gives the same token, so one sender can be followed through the logs without being named),
 * or not at all ("off"). Doors log addresses only through renderAddress, so one setting covers every door.
 */
import { createHash } from 'node:crypto';

export type AddressPrivacy = 'plain' | 'hash' | 'off';

/** A function turning an address into its log form. */
export type AddressRenderer = (address: string) => string;

/** Longest address rendered in plain mode (longer ones are cut, with an ellipsis): logs stay bounded. */
const MAX_PLAIN = 320;

export function makeAddressRenderer(mode: AddressPrivacy, salt = ''): AddressRenderer {
  switch (mode) {
    case 'plain':
      return (a) => (a.length > MAX_PLAIN ? a.slice(0, MAX_PLAIN) + '…' : a);
    case 'off':
      return (a) => (a === '' ? '<>' : '-');
    case 'hash':
      return (a) => (a === '' ? '<>' : 'sha256:' + createHash('sha256').update(salt).update('\0').update(a.toLowerCase()).digest('hex').slice(0, 16));
  }
}

let current: AddressRenderer = makeAddressRenderer('plain');

/** Set by the daemon from the `log.addresses` setting (and again on reload). */
export function configureAddressPrivacy(mode: AddressPrivacy, salt = ''): void {
  current = makeAddressRenderer(mode, salt);
}

/** The log form of an envelope address ("" is the null sender, rendered "<>"). */
export function renderAddress(address: string): string {
  return current(address);
}

/** The log form of a list of addresses. */
export function renderAddresses(addresses: readonly string[]): string[] {
  return addresses.map(current);
}
