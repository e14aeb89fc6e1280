/**
 * A full syntax check of an SPF record against the RFC 7208 §12 ABNF, done when the record is fetched and
 * before anything in it is evaluated: a syntax error anywhere in the record is a permerror (§4.6), even when
 * evaluation would have stopped at an earlier `all`. mailauth validates terms only as it reaches them.
 * Returns the problem, or undefined for a valid record.
 */
import { isIPv4, isIPv6 } from 'node:net';

const MECHANISMS = new Set(['all', 'include', 'a', 'mx', 'ptr', 'ip4', 'ip6', 'exists']);

/** macro-string with the letters allowed outside explanations (c, r, t are exp-only, RFC 7208 §7.2). */
function macroStringProblem(s: string): string | undefined {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (s[i] === '%') {
      const n = s[i + 1];
      if (n === '%' || n === '_' || n === '-') {
        i++;
        continue;
      }
      if (n !== '{') return 'bad macro';
      const end = s.indexOf('}', i);
      if (end < 0) return 'unterminated macro';
      if (!/^[slodiphv]\d*r?[.\-+,/_=]*$/i.test(s.slice(i + 2, end))) return 'bad macro';
      if (/^[a-z]0/i.test(s.slice(i + 2, end)) && /^[a-z]0+(\D|$)/i.test(s.slice(i + 2, end))) return 'macro transformer 0';
      i = end;
      continue;
    }
    if (c < 0x21 || c > 0x7e) return 'bad character';
  }
  return undefined;
}

/** domain-spec = macro-string domain-end; domain-end = ("." toplabel ["."]) / macro-expand */
export function domainSpecProblem(spec: string): string | undefined {
  if (spec === '') return 'empty domain-spec';
  const p = macroStringProblem(spec);
  if (p !== undefined) return p;
  if (/%\{[^}]*\}$/.test(spec)) return undefined;
  const m = /\.([^.]*)\.?$/.exec(spec);
  if (!m || m[1] === undefined) return 'domain-spec without a top label';
  const top = m[1];
  if (/^[a-z0-9]*[a-z][a-z0-9]*$/i.test(top) || /^[a-z0-9]+-[a-z0-9-]*[a-z0-9]$/i.test(top)) return undefined;
  return 'bad top label';
}

const IP4_CIDR = /^\/(0|[1-9]\d?)$/;
const IP6_CIDR = /^\/(0|[1-9]\d{0,2})$/;

function cidrProblem(ip4: string | undefined, ip6: string | undefined): string | undefined {
  if (ip4 !== undefined && ip4 !== '' && (!IP4_CIDR.test(ip4) || Number(ip4.slice(1)) > 32)) return 'bad ip4 cidr';
  if (ip6 !== undefined && ip6 !== '' && (!IP6_CIDR.test(ip6) || Number(ip6.slice(1)) > 128)) return 'bad ip6 cidr';
  return undefined;
}

function mechanismProblem(name: string, arg: string | undefined, rest: string): string | undefined {
  switch (name) {
    case 'all':
      return arg === undefined && rest === '' ? undefined : 'all takes no argument';
    case 'include':
    case 'exists':
      if (rest !== '' || arg === undefined) return `${name} needs a domain-spec`;
      return domainSpecProblem(arg);
    case 'ptr':
      if (rest !== '') return 'ptr takes no cidr';
      return arg === undefined ? undefined : domainSpecProblem(arg);
    case 'a':
    case 'mx': {
      // rest holds the dual-cidr-length when there is no ":domain"; with one, it is split off the argument
      let spec = arg;
      let cidr = rest;
      if (spec !== undefined) {
        const m = /^(.*?)((?:\/\d+)?(?:\/\/\d+)?)$/.exec(spec);
        spec = m?.[1] ?? spec;
        cidr = m?.[2] ?? '';
      }
      const c = /^(\/\d+)?(\/\/\d+)?$/.exec(cidr);
      if (!c) return 'bad cidr';
      const p = cidrProblem(c[1], c[2]?.slice(1));
      if (p !== undefined) return p;
      return spec === undefined ? undefined : domainSpecProblem(spec);
    }
    case 'ip4': {
      if (arg === undefined) return 'ip4 needs a network';
      const m = /^([^/]*)(\/.*)?$/.exec(arg);
      if (!m || !isIPv4(m[1] ?? '')) return 'bad ip4 network';
      return cidrProblem(m[2], undefined);
    }
    case 'ip6': {
      if (arg === undefined) return 'ip6 needs a network';
      const m = /^([^/]*)(\/.*)?$/.exec(arg);
      if (!m || !isIPv6(m[1] ?? '')) return 'bad ip6 network';
      return cidrProblem(undefined, m[2]);
    }
  }
  return `unknown mechanism ${name}`;
}

export function spfRecordProblem(record: string): string | undefined {
  const terms = record.split(' ');
  if ((terms[0] ?? '').toLowerCase() !== 'v=spf1') return 'not an SPF record';
  let exp = 0;
  let redirect = 0;
  for (const term of terms.slice(1)) {
    if (term === '') continue;
    // modifier: name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
    const mod = /^([a-z][a-z0-9\-_.]*)=(.*)$/i.exec(term);
    if (mod && mod[1] !== undefined && mod[2] !== undefined) {
      const name = mod[1].toLowerCase();
      if (name === 'exp' || name === 'redirect') {
        if (name === 'exp' ? ++exp > 1 : ++redirect > 1) return `${name}= appears twice`;
        const p = domainSpecProblem(mod[2]);
        if (p !== undefined) return `${name}=: ${p}`;
      } else {
        const p = mod[2] === '' ? undefined : macroStringProblem(mod[2].replace(/%\{[ctr]/gi, '%{s'));
        if (p !== undefined) return `${name}=: ${p}`;
      }
      continue;
    }
    const d = /^([-+?~]?)([a-z0-9]+)(?::([^/]*(?:\/.*)?))?(\/.*)?$/i.exec(term);
    if (!d || d[2] === undefined) return `bad term ${JSON.stringify(term)}`;
    const name = d[2].toLowerCase();
    if (!MECHANISMS.has(name)) return `unknown mechanism ${name}`;
    const p = mechanismProblem(name, d[3], d[4] ?? '');
    if (p !== undefined) return p;
  }
  return undefined;
}
