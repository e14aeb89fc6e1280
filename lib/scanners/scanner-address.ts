/**
 * Where a scanner daemon listens: a Unix socket path or a TCP host and port.
 * Accepted spellings: "/run/clamav/clamd.ctl", "unix:/path", "127.0.0.1:3310", "[::1]:783", "localhost:783".
 */
export type ScannerAddress = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export class ScannerAddressError extends Error {
  override readonly name = 'ScannerAddressError';
}

export function parseScannerAddress(text: string): ScannerAddress {
  const s = text.trim();
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    if (!path.startsWith('/')) throw new ScannerAddressError(`unix socket path must be absolute: "${path}"`);
    return { kind: 'unix', path };
  }
  if (s.startsWith('/')) return { kind: 'unix', path: s };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  if (!m) throw new ScannerAddressError(`"${text}" is neither an absolute socket path nor host:port`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new ScannerAddressError(`port ${port} out of range 1..65535`);
  return { kind: 'tcp', host: (m[1] ?? m[2]) as string, port };
}

export function formatScannerAddress(a: ScannerAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Connection options for net.connect. */
export function connectOptions(a: ScannerAddress): { path: string } | { host: string; port: number } {
  return a.kind === 'unix' ? { path: a.path } : { host: a.host, port: a.port };
}
