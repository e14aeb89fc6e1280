/**
 * The configured scanners behind the ScannerSet contract (scanner.ts). Per message: clamd gets the bytes as they
 * arrive (INSTREAM); spamd and the filter command share one bounded spool (memory, then a private 0600 file)
 * and run when the message is complete. Every scanner has its own size limit (over it: listed in
 * results.skipped) and timeout (a failure or timeout: results.failed, never an exception); the rules decide.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { ScanResults } from '../core/stage.js';
import { ClamdClient, type ClamdScanResult, type ClamdStream } from './clamd-client.js';
import { runFilterCommand, type FilterMode, type FilterResult } from './filter-command.js';
import { MessageSpool } from './message-spool.js';
import type { ScanJob, ScanMeta, ScanOutcome, ScannerSet } from './scanner.js';
import type { ScannerAddress } from './scanner-address.js';
import { SpamdClient, type SpamdResult } from './spamd-client.js';
import type { SpamdMethod } from './spamd-protocol.js';

/** Field names match the daemon's `scanners:` config section, so it can be passed as is. */
export interface ScannerSetOptions {
  readonly clamd?: {
    readonly address: string | ScannerAddress;
    readonly timeout: number;
    /** Bytes streamed at most (≤ clamd's StreamMaxLength); a clean prefix of a larger message is "skipped". */
    readonly maxSize: number;
    readonly chunkSize?: number;
  };
  readonly spamd?: {
    readonly address: string | ScannerAddress;
    readonly timeout: number;
    /** Larger messages are not sent (skipped). */
    readonly maxSize: number;
    /** Overrides spamd's required_score: spam when score ≥ threshold. */
    readonly threshold?: number;
    readonly user?: string;
    readonly method?: SpamdMethod;
  };
  readonly filter?: {
    readonly command: readonly string[];
    readonly mode: FilterMode;
    readonly timeout: number;
    /** Larger messages are not filtered (skipped); also the cap on the rewritten message. */
    readonly maxSize: number;
    /** Private directory for the filter's files (created 0700 if missing). */
    readonly tempDir?: string;
    readonly path?: string;
    readonly env?: Readonly<Record<string, string>>;
  };
  /** Private directory for message spools (default: the filter's tempDir, else a fresh one under the system tmp). */
  readonly tempDir?: string;
  /** Spool bytes kept in memory before spilling to a file (default 1 MiB). */
  readonly memoryLimit?: number;
  /** How long a rewritten message is kept if the door never calls abort() (default 10 minutes). */
  readonly rewrittenTtlMs?: number;
}

/** Scanner names as they appear in results.skipped / results.failed and in rules. */
export const SCANNER_NAMES = { clamd: 'clamd', spamd: 'spamd', filter: 'filter' } as const;

export interface ScannerProbe {
  readonly [scanner: string]: { readonly ok: boolean; readonly detail?: string };
}

export interface ConfiguredScannerSet extends ScannerSet {
  /** The largest message any scanner reads; beyond it, doors may stop feeding (milter SKIP). 0 = none. */
  readonly maxScanBytes: number;
  /** The private directory holding spools (undefined until the first spill when none is configured). */
  readonly tempDir: string | undefined;
  /** Waits up to `graceMs` (default: the longest scanner timeout + 2 s) for scans in progress, then aborts the rest. */
  close(graceMs?: number): Promise<void>;
  /** Health: clamd zPING + zVERSION, spamd PING, the filter's argv[0] existence. */
  probe(): Promise<ScannerProbe>;
}

const BACKSTOP_MS = 2000;

/** Makes (or checks) a private directory: 0700 and owned by us. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new Error(`${dir} is not owned by this user`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

function withBackstop<T>(p: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(onTimeout()), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      () => {
        clearTimeout(t);
        resolve(onTimeout());
      },
    );
  });
}

export function createScannerSet(options: ScannerSetOptions, logger: Logger): ConfiguredScannerSet {
  const log = logger.child({ component: 'scanners' });
  const clamd = options.clamd ? new ClamdClient({ address: options.clamd.address, maxBytes: options.clamd.maxSize, timeoutMs: options.clamd.timeout, ...(options.clamd.chunkSize ? { chunkSize: options.clamd.chunkSize } : {}) }) : undefined;
  const spamd = options.spamd
    ? new SpamdClient({ address: options.spamd.address, timeoutMs: options.spamd.timeout, ...(options.spamd.method ? { method: options.spamd.method } : {}), ...(options.spamd.user ? { user: options.spamd.user } : {}) })
    : undefined;
  const filter = options.filter;
  const enabled = clamd !== undefined || spamd !== undefined || filter !== undefined;

  // Spools go to the configured directory, else the filter's, else a private directory of our own, made at the
  // first spill (so a daemon that drops root after start-up owns it).
  let ownTemp: string | undefined;
  const configuredDir = options.tempDir ?? filter?.tempDir;
  if (configuredDir !== undefined) ensurePrivateDir(configuredDir);
  if (filter?.tempDir !== undefined && filter.tempDir !== configuredDir) ensurePrivateDir(filter.tempDir);
  const spoolDir = (): string => configuredDir ?? (ownTemp ??= mkdtempSync(join(tmpdir(), 'sluice-scan-')));
  const filterDir = (): string => filter?.tempDir ?? spoolDir();

  const spoolCapacity = Math.max(options.spamd?.maxSize ?? 0, filter?.maxSize ?? 0);
  const memoryLimit = options.memoryLimit ?? 1024 * 1024;
  const ttl = options.rewrittenTtlMs ?? 600_000;
  /** Jobs whose scan has not finished yet. */
  const active = new Set<Job>();
  /** Finished jobs still holding a rewritten message (removed on abort() or after the TTL). */
  const holding = new Set<Job>();
  const closeGraceMs = Math.max(options.clamd?.timeout ?? 0, options.spamd?.timeout ?? 0, filter?.timeout ?? 0) + BACKSTOP_MS;

  class Job implements ScanJob {
    private readonly clamdStream: ClamdStream | undefined;
    private readonly spool: MessageSpool | undefined;
    private readonly ac = new AbortController();
    private rewrittenPath: string | undefined;
    private ttlTimer: NodeJS.Timeout | undefined;
    private endP: Promise<ScanOutcome> | undefined;
    private aborted = false;

    constructor(private readonly meta: ScanMeta) {
      this.clamdStream = clamd?.startStream();
      this.spool = spoolCapacity > 0 ? new MessageSpool({ capacity: spoolCapacity, memoryLimit, dir: spoolDir, hash: filter !== undefined }) : undefined;
      active.add(this);
    }

    write(chunk: Buffer): void {
      if (this.aborted || this.endP) return;
      try {
        this.clamdStream?.write(chunk);
        this.spool?.write(chunk);
      } catch (err) {
        log.error({ err, sessionId: this.meta.sessionId }, 'scanner write failed');
      }
    }

    get backlog(): number {
      if (this.aborted) return 0;
      return (this.clamdStream?.backlog ?? 0) + (this.spool?.backlog ?? 0);
    }

    drained(): Promise<void> {
      if (this.aborted) return Promise.resolve();
      return Promise.all([this.clamdStream?.drained(), this.spool?.drained()]).then(() => undefined);
    }

    end(): Promise<ScanOutcome> {
      this.endP ??= this.run().catch((err: Error) => {
        log.error({ err, sessionId: this.meta.sessionId }, 'scan failed unexpectedly');
        return { results: { skipped: [], failed: { scanner: 'internal error' } } };
      });
      return this.endP;
    }

    abort(): void {
      if (this.aborted) return;
      this.aborted = true;
      this.ac.abort();
      this.clamdStream?.abort();
      void this.spool?.dispose();
      this.removeRewritten();
      active.delete(this);
    }

    private removeRewritten(): void {
      clearTimeout(this.ttlTimer);
      const p = this.rewrittenPath;
      this.rewrittenPath = undefined;
      if (p) void rm(p, { force: true });
      holding.delete(this);
    }

    private async run(): Promise<ScanOutcome> {
      const t0 = Date.now();
      const skipped: string[] = [];
      const failed: Record<string, string> = {};
      let virus: ScanResults['virus'];
      let spam: ScanResults['spam'];
      let filterRes: ScanResults['filter'];
      let rewritten: ScanOutcome['rewritten'];

      const clamdP = this.clamdStream
        ? withBackstop<ClamdScanResult>(this.clamdStream.end(), (options.clamd?.timeout ?? 0) + BACKSTOP_MS, () => ({ kind: 'error', message: 'timeout' }))
        : undefined;

      let spoolOk = true;
      if (this.spool) {
        try {
          await this.spool.finish();
        } catch (err) {
          spoolOk = false;
          log.error({ err, sessionId: this.meta.sessionId }, 'spooling the message failed');
        }
      }
      const spool = this.spool;
      const size = spool?.size ?? this.clamdStream?.total ?? 0;

      let spamdP: Promise<SpamdResult | 'skipped'> | undefined;
      if (spamd && spool && options.spamd) {
        if (!spoolOk) spamdP = Promise.resolve({ kind: 'error', message: 'spool failed' });
        else if (spool.size > options.spamd.maxSize) spamdP = Promise.resolve('skipped');
        else spamdP = withBackstop<SpamdResult>(spamd.check(spool.open(), spool.stored), options.spamd.timeout + BACKSTOP_MS, () => ({ kind: 'error', message: 'timeout' }));
      }
      let filterP: Promise<FilterResult | 'skipped'> | undefined;
      if (filter && spool) {
        if (!spoolOk) filterP = Promise.resolve({ kind: 'error', message: 'spool failed' });
        else if (spool.size > filter.maxSize) filterP = Promise.resolve('skipped');
        else {
          const digest = spool.digest();
          filterP = withBackstop<FilterResult>(
            runFilterCommand(
              { argv: filter.command, mode: filter.mode, timeoutMs: filter.timeout, tempDir: filterDir(), maxOutputBytes: filter.maxSize, ...(filter.path ? { path: filter.path } : {}), ...(filter.env ? { env: filter.env } : {}) },
              {
                client: this.meta.client.ip,
                sender: this.meta.sender ?? '',
                recipients: this.meta.recipients,
                remote: this.meta.client.ip,
                ...(this.meta.helo !== undefined ? { remoteHelo: this.meta.helo, helo: this.meta.helo } : {}),
                ...(this.meta.destination ? { server: this.meta.destination.ip } : {}),
              },
              { open: () => spool.open(), ...(digest ? { digest } : {}) },
              this.ac.signal,
            ),
            filter.timeout + BACKSTOP_MS * 5,
            () => ({ kind: 'error', message: 'timeout' }),
          );
        }
      }

      const [c, s, f] = await Promise.all([clamdP, spamdP, filterP]);

      if (c) {
        switch (c.kind) {
          case 'clean':
            virus = { found: false, scanner: SCANNER_NAMES.clamd };
            break;
          case 'virus':
            virus = { found: true, name: c.name, scanner: SCANNER_NAMES.clamd };
            break;
          case 'skipped':
            skipped.push(SCANNER_NAMES.clamd);
            break;
          case 'error':
            failed[SCANNER_NAMES.clamd] = c.message;
            break;
        }
      }
      if (s === 'skipped') skipped.push(SCANNER_NAMES.spamd);
      else if (s?.kind === 'error') failed[SCANNER_NAMES.spamd] = s.message;
      else if (s) {
        const threshold = options.spamd?.threshold ?? s.threshold;
        spam = { score: s.score, threshold, symbols: s.symbols, isSpam: options.spamd?.threshold !== undefined ? s.score >= threshold : s.isSpam };
      }
      if (f === 'skipped') skipped.push(SCANNER_NAMES.filter);
      else if (f?.kind === 'error') {
        failed[SCANNER_NAMES.filter] = f.message;
        // proxsmtpd answers a broken filter with "451 Local Error"; rules see both this and scan.failed.
        filterRes = { code: 451, reply: '4.3.0 Local Error' };
      } else if (f?.kind === 'reply') filterRes = { code: f.code, reply: f.reply };
      else if (f?.kind === 'pass') {
        filterRes = { code: 0 };
        if (f.rewritten) {
          if (this.aborted) void rm(f.rewritten.path, { force: true });
          else {
            rewritten = f.rewritten;
            this.rewrittenPath = f.rewritten.path;
            holding.add(this);
            this.ttlTimer = setTimeout(() => this.removeRewritten(), ttl);
            this.ttlTimer.unref();
          }
        }
      }

      await spool?.dispose();
      active.delete(this);
      const results: ScanResults = {
        ...(virus ? { virus } : {}),
        ...(spam ? { spam } : {}),
        ...(filterRes ? { filter: filterRes } : {}),
        skipped,
        failed,
      };
      const fields = { sessionId: this.meta.sessionId, size, ms: Date.now() - t0, virus: virus?.name, spamScore: spam?.score, filterCode: filterRes?.code, skipped, failed };
      if (Object.keys(failed).length > 0) log.warn(fields, 'scanner failure');
      else log.debug(fields, 'scanned');
      return rewritten ? { results, rewritten } : { results };
    }
  }

  return {
    enabled,
    maxScanBytes: Math.max(options.clamd?.maxSize ?? 0, spoolCapacity),
    get tempDir() {
      return configuredDir ?? ownTemp;
    },
    start(meta: ScanMeta): ScanJob {
      return new Job(meta);
    },
    async close(graceMs = closeGraceMs): Promise<void> {
      // Scans in progress (a reload replaces this set while sessions still use it) get time to finish.
      const deadline = Date.now() + graceMs;
      while (active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const j of [...active, ...holding]) j.abort();
      if (ownTemp !== undefined) rmSync(ownTemp, { recursive: true, force: true });
      ownTemp = undefined;
    },
    async probe(): Promise<ScannerProbe> {
      const out: Record<string, { ok: boolean; detail?: string }> = {};
      if (clamd) {
        const ok = await clamd.ping();
        const version = ok ? await clamd.version() : undefined;
        out[SCANNER_NAMES.clamd] = { ok, ...(version ? { detail: version } : {}) };
      }
      if (spamd) out[SCANNER_NAMES.spamd] = { ok: await spamd.ping() };
      if (filter) {
        const prog = filter.command[0] ?? '';
        let ok = false;
        try {
          ok = prog.startsWith('/') ? statSync(prog).isFile() : prog !== '';
        } catch {
          ok = false;
        }
        out[SCANNER_NAMES.filter] = { ok, detail: prog };
      }
      return out;
    },
  };
}
