/**
 * Finds the user name in a SASL exchange the proxy can see (RFC 4616 PLAIN: authzid NUL authcid NUL passwd;
 * LOGIN: the first base64 client response is the user name). Returns undefined when it is not visible.
 * The password is never returned or kept.
 */
export function decodeSaslUser(mechanism: string, response: string, step: number): string | undefined {
  if (!/^[A-Za-z0-9+/=]{1,4096}$/.test(response)) return undefined;
  const bytes = Buffer.from(response, 'base64');
  if (mechanism === 'PLAIN' && step === 0) {
    const parts = bytes.toString('utf8').split('\0');
    if (parts.length !== 3) return undefined;
    const user = parts[1] || parts[0];
    return user ? clean(user) : undefined;
  }
  if (mechanism === 'LOGIN' && step === 0) {
    const user = bytes.toString('utf8');
    return user ? clean(user) : undefined;
  }
  return undefined;
}

function clean(s: string): string | undefined {
  const t = s.slice(0, 256);
  return /[\0-\x1f\x7f]/.test(t) ? undefined : t;
}
