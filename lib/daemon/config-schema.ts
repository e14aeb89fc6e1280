/**
 * A small schema library for YAML configuration (no dependency beyond `yaml`): every validator reads a YAML node
 * with its source range, so each problem becomes a Diagnostic naming the key path and file:line:col. Validation
 * never stops at the first problem: all of them are collected and reported at once.
 */
import { isMap, isScalar, isSeq, Scalar, type LineCounter, type Node, type Pair, type YAMLMap } from 'yaml';
import type { Diagnostic } from '../core/errors.js';
import { nearest as nearestWord, type Tolerance } from '../core/edit-distance.js';

/** How near a config key or value must be to suggest it: 1 edit for words up to 3 characters, 2 up to 6, else 3. */
export const CONFIG_TOLERANCE: Tolerance = (word) => (word.length <= 3 ? 1 : word.length <= 6 ? 2 : 3);

function nearest(word: string, candidates: Iterable<string>): string | undefined {
  return nearestWord(word, candidates, { tolerance: CONFIG_TOLERANCE });
}

export const INVALID: unique symbol = Symbol('invalid');
export type Invalid = typeof INVALID;
export type Parsed<T> = T | Invalid;

/** Where validation is, and where problems go. */
export class SchemaContext {
  readonly diagnostics: Diagnostic[] = [];
  private readonly lines: string[];
  constructor(
    readonly file: string,
    source: string,
    private readonly lineCounter: LineCounter,
    /** Relative paths in the file are resolved against this directory. */
    readonly baseDir: string,
  ) {
    this.lines = source.split(/\r?\n/);
  }

  /** Records a problem at `node` (or at the start of the file). */
  error(node: Node | Pair | null | undefined, code: string, message: string, hint?: string): void {
    const range = node ? rangeOf(node) : undefined;
    const pos = this.lineCounter.linePos(range ? range[0] : 0);
    const sourceLine = this.lines[pos.line - 1];
    const length = range ? Math.max(1, Math.min(range[1] - range[0], (sourceLine?.length ?? 0) - (pos.col - 1))) : 1;
    this.diagnostics.push({
      code,
      message,
      location: { file: this.file, line: pos.line, column: pos.col },
      ...(sourceLine !== undefined ? { sourceLine, length } : {}),
      ...(hint !== undefined ? { hint } : {}),
    });
  }
}

function rangeOf(node: Node | Pair): readonly [number, number] | undefined {
  if ('range' in node && node.range) return [node.range[0], node.range[1]];
  const key = (node as Pair).key as Node | null;
  if (key && key.range) return [key.range[0], key.range[1]];
  return undefined;
}

export interface Schema<T> {
  /** What is expected, in words, for messages: "a duration such as 30s". */
  readonly expected: string;
  /** For mappings with fixed keys (and lists of them): YAML key → schema, so docs and specs can walk every key. */
  readonly keys?: () => ReadonlyMap<string, Schema<unknown>>;
  parse(node: Node, ctx: SchemaContext, path: string): Parsed<T>;
}

/** Shows a scalar value the way the user wrote it, shortened. */
function shown(node: Node): string {
  if (isScalar(node)) {
    const v = node.value;
    const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
    return s.length > 60 ? s.slice(0, 57) + '...' : s;
  }
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  return 'something else';
}

function typeError<T>(node: Node, ctx: SchemaContext, path: string, expected: string): Parsed<T> {
  ctx.error(node, 'config/type', `${path}: expected ${expected}, got ${shown(node)}`);
  return INVALID;
}

function scalarOf(node: Node): Scalar | undefined {
  return isScalar(node) ? node : undefined;
}

/** What a converter returns for a bad value. */
export class Problem {
  constructor(
    readonly error: string,
    readonly hint?: string,
  ) {}
}

/** A scalar validator from a converter returning the value or a Problem. */
export function scalar<T>(expected: string, convert: (value: unknown, ctx: SchemaContext) => T | Problem): Schema<T> {
  return {
    expected,
    parse(node, ctx, path) {
      const s = scalarOf(node);
      if (!s) return typeError(node, ctx, path, expected);
      const r = convert(s.value, ctx);
      if (r instanceof Problem) {
        ctx.error(node, 'config/value', `${path}: ${r.error}`, r.hint);
        return INVALID;
      }
      return r;
    },
  };
}

export function nonEmptyString(expected = 'a non-empty string'): Schema<string> {
  return scalar(expected, (v) => (typeof v === 'string' && v.trim() !== '' ? v : new Problem(`expected ${expected}, got ${JSON.stringify(v)}`)));
}

export const bool: Schema<boolean> = scalar('true or false', (v) => (typeof v === 'boolean' ? v : new Problem(`expected true or false, got ${JSON.stringify(v)}`)));

export function int(min: number, max: number): Schema<number> {
  const expected = `an integer from ${min} to ${max}`;
  return scalar(expected, (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : new Problem(`expected ${expected}, got ${JSON.stringify(v)}`)));
}

export function num(min: number, max: number): Schema<number> {
  const expected = `a number from ${min} to ${max}`;
  return scalar(expected, (v) => (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? v : new Problem(`expected ${expected}, got ${JSON.stringify(v)}`)));
}

/** One of a fixed set of words; a near miss gets a suggestion. */
export function oneOf<const W extends string>(words: readonly W[]): Schema<W> {
  const expected = `one of ${words.join(', ')}`;
  return scalar(expected, (v) => {
    if (typeof v === 'string' && (words as readonly string[]).includes(v)) return v as W;
    const near = typeof v === 'string' ? nearest(v, words) : undefined;
    return near ? new Problem(`expected ${expected}, got ${JSON.stringify(v)}`, `did you mean "${near}"?`) : new Problem(`expected ${expected}, got ${JSON.stringify(v)}`);
  });
}

export function list<T>(item: Schema<T>, opts: { min?: number; max?: number } = {}): Schema<T[]> {
  const expected = `a list of ${item.expected}`;
  return {
    expected,
    ...(item.keys ? { keys: item.keys } : {}),
    parse(node, ctx, path) {
      if (!isSeq(node)) return typeError(node, ctx, path, expected);
      const out: T[] = [];
      let ok = true;
      node.items.forEach((child, i) => {
        const r = item.parse(child as Node, ctx, `${path}[${i}]`);
        if (r === INVALID) ok = false;
        else out.push(r);
      });
      if (opts.min !== undefined && node.items.length < opts.min) {
        ctx.error(node, 'config/value', `${path}: needs at least ${opts.min} item${opts.min === 1 ? '' : 's'}`);
        return INVALID;
      }
      if (opts.max !== undefined && node.items.length > opts.max) {
        ctx.error(node, 'config/value', `${path}: allows at most ${opts.max} items`);
        return INVALID;
      }
      return ok ? out : INVALID;
    },
  };
}

/** A single value or a list of them (`rules: conf/rules` or `rules: [a.rules, b.rules]`). */
export function oneOrMany<T>(item: Schema<T>): Schema<T[]> {
  const many = list(item);
  return {
    expected: `${item.expected} or a list of them`,
    parse(node, ctx, path) {
      if (isSeq(node)) return many.parse(node, ctx, path);
      const r = item.parse(node, ctx, path);
      return r === INVALID ? INVALID : [r];
    },
  };
}

/** A mapping with free keys (e.g. hook names); keys must match `keyPattern`. */
export function record<T>(value: Schema<T>, keyPattern: RegExp, keyExpected: string): Schema<Record<string, T>> {
  const expected = `a mapping of ${keyExpected} to ${value.expected}`;
  return {
    expected,
    ...(value.keys ? { keys: () => new Map<string, Schema<unknown>>([['*', value as Schema<unknown>]]) } : {}),
    parse(node, ctx, path) {
      if (!isMap(node)) return typeError(node, ctx, path, expected);
      const out: Record<string, T> = Object.create(null) as Record<string, T>;
      let ok = true;
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
        if (key === undefined || !keyPattern.test(key)) {
          ctx.error(pair.key as Node, 'config/value', `${path}: ${JSON.stringify(key ?? shown(pair.key as Node))} is not a valid name (${keyExpected})`);
          ok = false;
          continue;
        }
        const r = value.parse(pair.value as Node, ctx, `${path}.${key}`);
        if (r === INVALID) ok = false;
        else out[key] = r;
      }
      return ok ? out : INVALID;
    },
  };
}

export interface Field<T> {
  readonly schema: Schema<T>;
  readonly required: boolean;
  readonly default?: (ctx: SchemaContext, path: string) => Parsed<T>;
}

export function required<T>(schema: Schema<T>): Field<T> {
  return { schema, required: true };
}
export function optional<T>(schema: Schema<T>): Field<T | undefined> {
  return { schema, required: false };
}
export function withDefault<T>(schema: Schema<T>, value: T | (() => T)): Field<T> {
  return { schema, required: false, default: typeof value === 'function' ? (value as () => T) : () => value };
}
/** A nested section that may be left out: its own defaults apply (as if written as an empty mapping). */
export function section<T>(schema: Schema<T>): Field<T> {
  return { schema, required: false, default: (ctx, path) => schema.parse(new Scalar(null), ctx, path) };
}

/** camelCase property → snake_case YAML key. */
export function yamlKey(prop: string): string {
  return prop.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Lets cross-field checks point at a key or value. */
export interface ObjectView {
  readonly node: YAMLMap;
  readonly path: string;
  /** The value node of a key, if the key is present. */
  valueNode(prop: string): Node | undefined;
  /** The path of a property ("intercept[0].upstream"). */
  pathOf(prop: string): string;
}

/**
 * A mapping with a fixed set of keys: one field per property of T (the YAML key is the property in snake_case).
 * Unknown keys are errors with the nearest known key suggested; missing required keys are errors at the mapping.
 * `check` runs cross-field rules on a value whose every field parsed.
 */
export function object<T extends object>(
  fields: { readonly [K in keyof T]-?: Field<T[K]> },
  check?: (value: T, ctx: SchemaContext, view: ObjectView) => void,
  expected = 'a mapping',
): Schema<T> {
  const keyToProp = new Map<string, string>();
  for (const prop of Object.keys(fields)) keyToProp.set(yamlKey(prop), prop);
  return {
    expected,
    keys: () => new Map([...keyToProp].map(([key, prop]) => [key, (fields as Record<string, Field<unknown>>)[prop]!.schema])),
    parse(node, ctx, path) {
      if (isScalar(node) && node.value === null) {
        // "section:" with nothing after it: an empty mapping.
      } else if (!isMap(node)) {
        return typeError(node, ctx, path || 'the file', expected);
      }
      const map = isMap(node) ? node : undefined;
      const out: Record<string, unknown> = {};
      const seen = new Map<string, Node>();
      let ok = true;
      const at = (key: string): string => (path ? `${path}.${key}` : key);
      for (const pair of map?.items ?? []) {
        const keyNode = pair.key as Node;
        const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
        const prop = key !== undefined ? keyToProp.get(key) : undefined;
        if (key === undefined || prop === undefined) {
          const near = key !== undefined ? nearest(key, keyToProp.keys()) : undefined;
          const where = path ? ` in ${path}` : '';
          ctx.error(
            keyNode,
            'config/unknown-key',
            `unknown key ${at(key ?? shown(keyNode))}`,
            near ? `did you mean "${near}"?` : `known keys${where}: ${[...keyToProp.keys()].join(', ')}`,
          );
          ok = false;
          continue;
        }
        const valueNode = pair.value as Node | null;
        seen.set(prop, valueNode ?? keyNode);
        if (valueNode === null || (isScalar(valueNode) && valueNode.value === null)) {
          continue; // "key:" with no value means "use the default"
        }
        const r = (fields as Record<string, Field<unknown>>)[prop]!.schema.parse(valueNode, ctx, at(key));
        if (r === INVALID) ok = false;
        else out[prop] = r;
      }
      for (const [prop, field] of Object.entries(fields as Record<string, Field<unknown>>)) {
        if (prop in out) continue;
        if (seen.has(prop) && !ok) continue;
        if (field.required) {
          ctx.error(map ?? node, 'config/missing-key', `missing key ${at(yamlKey(prop))}`, `${yamlKey(prop)} takes ${field.schema.expected}`);
          ok = false;
        } else if (field.default) {
          const d = field.default(ctx, at(yamlKey(prop)));
          if (d === INVALID) ok = false;
          else out[prop] = d;
        }
      }
      if (!ok) return INVALID;
      const value = out as T;
      if (check) {
        const before = ctx.diagnostics.length;
        check(value, ctx, {
          node: map as YAMLMap,
          path,
          valueNode: (prop) => seen.get(prop),
          pathOf: (prop) => at(yamlKey(prop)),
        });
        if (ctx.diagnostics.length > before) return INVALID;
      }
      return value;
    },
  };
}

/** Every key path under a schema: "log.level", "intercept[].listen", "hooks.*.timeout". */
export function keyPaths(schema: Schema<unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [key, child] of schema.keys?.() ?? []) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (key !== '*') out.push(path);
    const isList = child.expected.startsWith('a list of');
    out.push(...keyPaths(child, isList ? `${path}[]` : path));
  }
  return out;
}
