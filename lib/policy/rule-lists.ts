/**
 * Named lists: inline (`list trusted = 127.0.0.0/8, ::1`) or from a file (one entry per line, `#` comments).
 * A list whose every entry is an address or prefix is an address list (matched with integer CIDR sets);
 * any other list is a string list, matched case-insensitively; an entry "@example.com" matches every
 * address in that domain.
 */
import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { ItemNode, ListNode } from './rule-ast.js';
import { CidrSet, parseCidr, type ParsedIp } from './ip-match.js';
import type { DiagnosticSink, Span } from './rule-source.js';

/** Largest list file read (bytes) and most entries in one list. */
export const MAX_LIST_FILE = 64 * 1024 * 1024;
export const MAX_LIST_ENTRIES = 2_000_000;

export interface CompiledList {
  readonly name: string;
  readonly span: Span;
  readonly size: number;
  /** Every entry parsed as an address or prefix. */
  readonly isAddressList: boolean;
  /** First entry that is not an address, for the diagnostic when the list meets an address field. */
  readonly firstNonAddress?: { text: string; span: Span };
  /** First entry that looks like a prefix but is malformed (host bits set, bad length). */
  readonly badPrefix?: { text: string; span: Span; error: string };
  readonly cidrs: CidrSet;
  readonly strings: ReadonlySet<string>;
  readonly domains: ReadonlySet<string>;
  readonly entries: readonly string[];
}

export function buildList(name: string, span: Span, items: readonly ItemNode[]): CompiledList {
  const cidrs = new CidrSet();
  const strings = new Set<string>();
  const domains = new Set<string>();
  let firstNonAddress: { text: string; span: Span } | undefined;
  let badPrefix: { text: string; span: Span; error: string } | undefined;
  const entries: string[] = [];
  for (const it of items) {
    entries.push(it.text);
    const lower = it.text.toLowerCase();
    strings.add(lower);
    if (lower.startsWith('@') && lower.length > 1) domains.add(lower.slice(1));
    const c = it.quoted ? undefined : parseCidr(it.text);
    if (c && 'ip' in c) cidrs.add(c);
    else {
      if (c && 'error' in c && !badPrefix) badPrefix = { text: it.text, span: it.span, error: c.error };
      if (!firstNonAddress) firstNonAddress = { text: it.text, span: it.span };
    }
  }
  return {
    name,
    span,
    size: items.length,
    isAddressList: firstNonAddress === undefined,
    ...(firstNonAddress ? { firstNonAddress } : {}),
    ...(badPrefix ? { badPrefix } : {}),
    cidrs,
    strings,
    domains,
    entries,
  };
}

/** Reads a list file: one entry per line; `#` starts a comment; blank lines ignored. */
export function loadListFile(node: ListNode, baseDir: string | undefined, sink: DiagnosticSink): ItemNode[] | undefined {
  const file = node.file;
  if (!file) return [];
  const path = isAbsolute(file.value) ? file.value : resolve(baseDir ?? '.', file.value);
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) {
      sink.error('rule/list-file', `list file ${path} is not a regular file`, file.span);
      return undefined;
    }
    if (st.size > MAX_LIST_FILE) {
      sink.error('rule/list-file', `list file ${path} is ${st.size} bytes; at most ${MAX_LIST_FILE} are read`, file.span);
      return undefined;
    }
    text = readFileSync(path, 'utf8');
  } catch (e) {
    sink.error('rule/list-file', `cannot read list file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, file.span, baseDir ? `relative paths are resolved from ${baseDir}` : undefined);
    return undefined;
  }
  const items: ItemNode[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const hash = raw.indexOf('#');
    const entry = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (entry === '') continue;
    if (items.length >= MAX_LIST_ENTRIES) {
      sink.error('rule/list-file', `list file ${path} has more than ${MAX_LIST_ENTRIES} entries`, file.span);
      return undefined;
    }
    if (/\s/.test(entry)) {
      sink.error('rule/list-file', `${path}:${i + 1}: an entry may not contain spaces ("${entry.slice(0, 60)}")`, file.span, 'one entry per line');
      continue;
    }
    items.push({ text: entry, quoted: false, span: { file: path, line: i + 1, column: raw.indexOf(entry) + 1, length: entry.length } });
  }
  return items;
}

/** Address-list membership. */
export function inAddressList(list: CompiledList, ip: ParsedIp | undefined): boolean {
  return ip !== undefined && list.cidrs.has(ip);
}

/** Membership of an already lower-cased value. */
export function inLowerStringList(list: CompiledList, lower: string | undefined): boolean {
  if (lower === undefined) return false;
  if (list.strings.has(lower)) return true;
  if (list.domains.size > 0) {
    const at = lower.lastIndexOf('@');
    if (at >= 0 && list.domains.has(lower.slice(at + 1))) return true;
  }
  return false;
}

/** String-list membership: exact (case-insensitive) or "@domain" entries against an address's domain. */
export function inStringList(list: CompiledList, value: string | undefined): boolean {
  if (value === undefined) return false;
  const lower = value.toLowerCase();
  if (list.strings.has(lower)) return true;
  if (list.domains.size > 0) {
    const at = lower.lastIndexOf('@');
    if (at >= 0 && list.domains.has(lower.slice(at + 1))) return true;
  }
  return false;
}

