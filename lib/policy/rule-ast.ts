/** The syntax tree the parser produces and the compiler consumes. */
import type { Span } from './rule-source.js';

export interface FieldRef {
  readonly name: string;
  /** Argument of a function-like field: header("Subject"), dnsbl(zen), scanner(clamd). */
  readonly arg?: string;
  readonly span: Span;
}

export type CmpOp = '==' | '!=' | '~' | '!~' | '<' | '<=' | '>' | '>=' | 'in' | 'not in';

export type ValueNode =
  | { readonly kind: 'word'; readonly text: string; readonly span: Span }
  | { readonly kind: 'string'; readonly text: string; readonly span: Span }
  | { readonly kind: 'regex'; readonly pattern: string; readonly flags: string; readonly span: Span }
  /** `in NAME`: a declared list. */
  | { readonly kind: 'listref'; readonly name: string; readonly span: Span }
  /** `in (a, b, c)`: an inline list. */
  | { readonly kind: 'inline'; readonly items: readonly ItemNode[]; readonly span: Span };

export interface ItemNode {
  readonly text: string;
  readonly quoted: boolean;
  readonly span: Span;
}

export type Predicate = 'failed' | 'skipped' | 'locked' | 'exists' | 'listed';

export type ExprNode =
  /** n-ary, so a long chain of `or` is a flat list (no deep recursion). */
  | { readonly kind: 'and' | 'or'; readonly items: readonly ExprNode[]; readonly span: Span }
  | { readonly kind: 'not'; readonly expr: ExprNode; readonly span: Span }
  | { readonly kind: 'cmp'; readonly field: FieldRef; readonly op: CmpOp; readonly opSpan: Span; readonly value: ValueNode; readonly span: Span }
  /** A field used as a condition on its own (`authenticated`, `dnsbl(zen)`) or with a postfix predicate. */
  | { readonly kind: 'pred'; readonly field: FieldRef; readonly pred?: Predicate; readonly span: Span };

export type ActionNode =
  | { readonly kind: 'accept' | 'discard'; readonly span: Span }
  | { readonly kind: 'reject' | 'tempfail'; readonly code?: { value: string; span: Span }; readonly enhanced?: { value: string; span: Span }; readonly text?: { value: string; span: Span }; readonly span: Span }
  | { readonly kind: 'quarantine'; readonly text?: { value: string; span: Span }; readonly span: Span }
  | { readonly kind: 'add-header'; readonly name: { value: string; span: Span }; readonly value: { value: string; span: Span }; readonly first?: boolean; readonly span: Span }
  | { readonly kind: 'remove-header'; readonly name: { value: string; span: Span }; readonly span: Span }
  | { readonly kind: 'lock'; readonly subject: 'client' | 'auth'; readonly duration: { value: string; span: Span }; readonly reason?: { value: string; span: Span }; readonly span: Span }
  | { readonly kind: 'hook'; readonly name: string; readonly span: Span }
  | { readonly kind: 'tag'; readonly name: string; readonly span: Span };

export interface RuleNode {
  readonly kind: 'rule';
  readonly name: string;
  readonly nameSpan: Span;
  readonly stage: string;
  readonly stageSpan: Span;
  readonly condition?: ExprNode;
  readonly actions: readonly ActionNode[];
  readonly span: Span;
}

export interface ListNode {
  readonly kind: 'list';
  readonly name: string;
  readonly nameSpan: Span;
  readonly items: readonly ItemNode[];
  /** `list x = file "path"`. */
  readonly file?: { value: string; span: Span };
  readonly span: Span;
}

/** One statement of a test block: a keyword and its arguments, as the parser saw them. */
export interface TestStatement {
  readonly keyword: string;
  readonly args: readonly { readonly text: string; readonly quoted: boolean; readonly kind: 'word' | 'string' | 'regex' | 'punct'; readonly flags?: string; readonly span: Span }[];
  readonly span: Span;
}

export interface TestNode {
  readonly kind: 'test';
  readonly name: string;
  readonly statements: readonly TestStatement[];
  readonly span: Span;
}

export type DeclNode = RuleNode | ListNode | TestNode;
