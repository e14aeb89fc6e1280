/**
 * The daemon's logger: pino writing JSON, or compact text lines (log-text-format.ts, written directly without a
 * JSON round trip), to standard output or a file (pino's sonic-boom destination in both cases). lib/ code sees it only through the core Logger interface; doors make one child per session
 * (`logger.child({session: id})`). Disabled levels cost nothing (pino's noop methods).
 */
import { destination, pino, stdSerializers, stdTimeFunctions, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { Logger } from '../core/logger.js';
import type { LogConfig } from './config-types.js';
import { createTextLogger } from './log-text-format.js';

export interface DaemonLogger {
  readonly logger: Logger;
  setLevel(level: LogConfig['level']): void;
  /** Reopens the log file (after logrotate moved it); no-op for standard output. */
  reopen(): void;
  /** Writes out everything buffered. */
  flush(): Promise<void>;
}

export interface LoggerOptions {
  /** Write here instead of stdout / the configured file (tests). */
  readonly write?: (line: string) => void;
}

/**
 * Lines are written in batches: once 4 KB wait, or within 250 ms of the first. One write per line cost a busy door
 * a write on libuv's thread pool and two thread wake-ups per message: 35-50 us of CPU per line when lines come a
 * millisecond or more apart (a gateway's usual pace), against about 25 us batched, formatting included. Stop,
 * reload and a fatal error flush what waits; pino writes the rest synchronously at process exit. A SIGKILL can lose
 * the last 250 ms.
 */
const LOG_BATCH_BYTES = 4096;
const LOG_FLUSH_MS = 250;

export function createDaemonLogger(cfg: Pick<LogConfig, 'level' | 'format' | 'file'>, opts: LoggerOptions = {}): DaemonLogger {
  const sonic = opts.write ? undefined : destination({ dest: cfg.file ?? 1, sync: false, mkdir: true, append: true, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_MS });
  // A log destination that fails (disk full, a rotated file we may not reopen) must not take the daemon down:
  // say so once on stderr, the last outlet left, and keep serving.
  let reported = false;
  sonic?.on('error', (err: Error) => {
    if (reported) return;
    reported = true;
    process.stderr.write(`sluice: cannot write the log${cfg.file ? ` to ${cfg.file}` : ''}: ${err.message}\n`);
  });
  const sink: (s: string) => void = opts.write ?? ((s) => void sonic?.write(s));
  let logger: Logger;
  let setLevel: (level: LogConfig['level']) => void;
  if (cfg.format === 'text') {
    const text = createTextLogger(cfg.level, sink);
    logger = text.logger;
    setLevel = text.setLevel;
  } else {
    const stream: DestinationStream = { write: (s: string) => sink(s) };
    const p: PinoLogger = pino(
      {
        level: cfg.level,
        base: undefined,
        timestamp: stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
        serializers: { err: stdSerializers.err },
      },
      stream,
    );
    logger = p as unknown as Logger;
    setLevel = (level) => {
      p.level = level;
    };
  }
  return {
    logger,
    setLevel,
    reopen: () => {
      if (cfg.file && sonic) sonic.reopen();
    },
    flush: async () => {
      if (!sonic) return;
      await new Promise<void>((resolve) => {
        try {
          sonic.flush((err?: Error | null) => {
            void err;
            resolve();
          });
        } catch {
          resolve();
        }
      });
    },
  };
}
