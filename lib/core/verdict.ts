import type { SmtpReply } from './smtp-reply.js';
import type { RuleStage } from './stage.js';

export type VerdictAction = 'continue' | 'accept' | 'reject' | 'tempfail' | 'discard' | 'quarantine';

/** A place in a rule file. Lines and columns count from 1. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export type HeaderMutation =
  /** Append a header (milter SMFIR_ADDHEADER; the interceptor writes it first while streaming). */
  | { readonly kind: 'add'; readonly name: string; readonly value: string }
  /** Insert at a position, 0 = first (SMFIR_INSHEADER). */
  | { readonly kind: 'insert'; readonly name: string; readonly value: string; readonly index: number }
  /** Change the index-th (1-based) occurrence of a header; an empty value deletes it (SMFIR_CHGHEADER). */
  | { readonly kind: 'change'; readonly name: string; readonly value: string; readonly index: number };

export type Effect =
  | {
      readonly kind: 'lock';
      /** What is locked: the client address or the authenticated user. */
      readonly subject: 'client' | 'auth';
      readonly key: string;
      readonly durationMs: number;
      readonly reason: string;
      readonly rule: string;
    }
  | { readonly kind: 'hook'; readonly hook: string; readonly rule: string; readonly env: Readonly<Record<string, string>> }
  | { readonly kind: 'tag'; readonly tag: string; readonly rule: string };

/** One rule that fired (or, in traces, was considered). */
export interface RuleHit {
  readonly rule: string;
  readonly stage: RuleStage;
  readonly location: SourceLocation;
  readonly action: VerdictAction;
  /** Why it matched, in words ("helo ~ /^localhost$/ matched \"localhost\""). */
  readonly because: string;
}

/** What the engine decided at one stage. */
export interface Verdict {
  readonly action: VerdictAction;
  /** The reply to send for reject/tempfail (and optionally accept/discard). */
  readonly reply?: SmtpReply;
  readonly mutations: readonly HeaderMutation[];
  readonly effects: readonly Effect[];
  readonly hits: readonly RuleHit[];
  /** For quarantine: why. */
  readonly reason?: string;
}

export const CONTINUE: Verdict = Object.freeze({ action: 'continue', mutations: [], effects: [], hits: [] });

/** True when the verdict ends the message (or the session) here. */
export function isTerminal(v: Verdict): boolean {
  return v.action !== 'continue';
}

export function isRefusal(v: Verdict): boolean {
  return v.action === 'reject' || v.action === 'tempfail';
}
