/**
 * Test-side tools for the milter door: a raw MTA-side client that sends exact packets and reads exact replies,
 * DoorDeps for tests, and a scripted PolicyPort for protocol tests that must not depend on rule semantics.
 */
import { connect, type Socket } from 'node:net';
import { ProtocolError } from '../../lib/core/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../lib/core/limits.js';
import { NULL_LOGGER, type Logger } from '../../lib/core/logger.js';
import type { PolicyNeeds, PolicyPort } from '../../lib/core/policy-port.js';
import type { RuleStage } from '../../lib/core/stage.js';
import type { Transaction } from '../../lib/core/transaction.js';
import { CONTINUE, type Verdict } from '../../lib/core/verdict.js';
import { NO_EFFECTS, type EffectRunner } from '../../lib/core/effects.js';
import type { DoorDeps } from '../../lib/daemon/door.js';
import type { LockStore } from '../../lib/policy/lock-store.js';
import { NO_SCANNERS, type ScannerSet } from '../../lib/scanners/scanner.js';
import { decodeReply, encodeCommand, PacketReader, type MilterCommand, type MilterReply } from '../../lib/milter/milter-codec.js';
import { promptAcksAvailable } from '../../lib/milter/prompt-ack.js';

/** TCP_QUICKACK from sluice's native addon (lib/milter/prompt-ack.ts): what lets a TCP milter skip DATA without a Nagle stall. */
export const promptAcksOverTcp = promptAcksAvailable();

export class MilterTestClient {
  readonly received: Buffer[] = [];
  private readonly reader = new PacketReader(64 * 1024 * 1024);
  private readonly pending: MilterReply[] = [];
  private waiters: Array<() => void> = [];
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk);
      this.reader.push(chunk);
      for (;;) {
        const p = this.reader.next();
        if (p === undefined) break;
        if (p instanceof ProtocolError) throw p;
        const r = decodeReply(p);
        if (r instanceof ProtocolError) throw r;
        this.pending.push(r);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static async open(target: { port: number; host?: string } | { path: string }): Promise<MilterTestClient> {
    const socket = 'path' in target ? connect(target.path) : connect(target.port, target.host ?? '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return new MilterTestClient(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Sends commands (and/or raw bytes) in ONE write, the way Postfix pipelines D + command. */
  send(...items: Array<MilterCommand | Buffer>): void {
    this.socket.write(Buffer.concat(items.map((c) => (Buffer.isBuffer(c) ? c : encodeCommand(c)))));
  }

  /** The next reply, or an error after timeoutMs. */
  async reply(timeoutMs = 3000): Promise<MilterReply> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.length === 0) {
      if (this.ended) throw new Error('connection closed while waiting for a reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no reply within ' + timeoutMs + ' ms');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.pending.shift() as MilterReply;
  }

  /** Replies up to and including the first one of a final type (skips nothing: returns all). */
  async untilFinal(timeoutMs = 3000): Promise<MilterReply[]> {
    const out: MilterReply[] = [];
    for (;;) {
      const r = await this.reply(timeoutMs);
      out.push(r);
      if (['accept', 'continue', 'reject', 'tempfail', 'discard', 'replycode', 'skip'].includes(r.type)) return out;
    }
  }

  /** Asserts no reply arrives for `ms`. */
  async nothingFor(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.pending.length > 0) throw new Error(`unexpected reply: ${JSON.stringify(this.pending[0])}`);
  }

  /** Resolves true if the server closes the connection within ms. */
  async closedWithin(ms: number): Promise<boolean> {
    if (this.ended) return true;
    return await Promise.race([this.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The OPTNEG Postfix 3.7 sends: version 6, all actions, all protocol bits. */
export const POSTFIX_OPTNEG: MilterCommand = { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff };

export type Script = (stage: RuleStage, tx: Transaction) => Verdict | undefined | Promise<Verdict | undefined>;

/** A PolicyPort whose verdicts come from a test function, recording every call (stage + transaction). */
export function scriptedPolicy(stages: readonly RuleStage[], script: Script, extra: Partial<PolicyNeeds> = {}): PolicyPort & { calls: Array<{ stage: RuleStage; tx: Transaction }> } {
  const calls: Array<{ stage: RuleStage; tx: Transaction }> = [];
  return {
    calls,
    // Like compiled rules: header and eoh rules read headers; others say so with `headers: true`.
    needs: { stages: new Set(stages), headers: stages.includes('header') || stages.includes('eoh'), scan: false, spf: false, dnsLists: new Set(), ...extra },
    async evaluate(stage, tx) {
      calls.push({ stage, tx });
      return (await script(stage, tx)) ?? CONTINUE;
    },
  };
}

const NO_LOCKS: LockStore = {
  lock: async () => ({ created: false, allowListed: false }),
  unlock: async () => false,
  isLocked: async () => undefined,
  list: async () => [],
  allow: async () => undefined,
  disallow: async () => false,
  listAllowed: async () => [],
  sweep: async () => 0,
  close: async () => undefined,
};

export function testDeps(policy: PolicyPort, over: { scanners?: ScannerSet; effects?: EffectRunner; limits?: Partial<Limits>; logger?: Logger; locks?: LockStore } = {}): DoorDeps {
  return {
    policy,
    locks: over.locks ?? NO_LOCKS,
    scanners: over.scanners ?? NO_SCANNERS,
    effects: over.effects ?? NO_EFFECTS,
    limits: { ...DEFAULT_LIMITS, ...over.limits },
    logger: over.logger ?? NULL_LOGGER,
    hostname: 'sluice.test',
  };
}

/** A logger that keeps records, to assert "closed with a log line". */
export function memoryLogger(): Logger & { records: Array<{ level: string; obj: object; msg?: string }> } {
  const records: Array<{ level: string; obj: object; msg?: string }> = [];
  const make = (bindings: object): Logger => ({
    debug: (obj, msg) => records.push({ level: 'debug', obj: { ...bindings, ...obj }, ...(msg ? { msg } : {}) }),
    info: (obj, msg) => records.push({ level: 'info', obj: { ...bindings, ...obj }, ...(msg ? { msg } : {}) }),
    warn: (obj, msg) => records.push({ level: 'warn', obj: { ...bindings, ...obj }, ...(msg ? { msg } : {}) }),
    error: (obj, msg) => records.push({ level: 'error', obj: { ...bindings, ...obj }, ...(msg ? { msg } : {}) }),
    child: (b) => make({ ...bindings, ...b }),
  });
  return Object.assign(make({}), { records });
}
