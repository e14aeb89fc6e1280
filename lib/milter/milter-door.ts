/**
 * The milter door: Postfix (smtpd_milters / non_smtpd_milters) or Sendmail talks milter v6 to sluice's engine.
 */
import type { Door, DoorDeps } from '../daemon/door.js';
import { DEFAULT_MAX_PACKET, MILTER_CHUNK_SIZE } from './milter-constants.js';
import { MilterServer, parseListenAddress } from './milter-server.js';

export interface MilterDoorOptions {
  /** `inet:127.0.0.1:8890`, `inet:8890@127.0.0.1`, `unix:/run/sluice/milter.sock`. */
  readonly listen: string;
  /** Largest packet accepted from the MTA, in bytes (default 1 MiB + 64 KiB; never less than 65536). */
  readonly maxPacket?: number;
  /** Close a connection the MTA leaves silent this long (default 10 minutes: longer than Postfix's smtpd_timeout). */
  readonly readTimeoutMs?: number;
  /** SMFIR_PROGRESS interval while a verdict waits on slow work (default 10 s; Postfix's command timeout is 30 s). */
  readonly progressIntervalMs?: number;
  /** Unix socket mode (default 0o660). */
  readonly socketMode?: number;
  /**
   * Also promise the MTA no reply (SMFIP_NR_*) for CONNECT/HELO/MAIL/RCPT when no rule is bound to them. Headers,
   * EOH and body chunks without rules are never answered, DATA always is (see milter-negotiate.ts). Default false.
   */
  readonly noReply?: boolean;
  /**
   * Judge CONNECT, HELO and MAIL when they arrive but answer them at the first RCPT, like Postfix's own
   * smtpd_delay_reject (default there: yes): Postfix gets no reply to wait for at CONNECT/HELO/MAIL
   * (SMFIP_NR_CONN/HELO/MAIL), saving three round trips per session; a refusal decided there refuses every
   * recipient instead, with the rule's text. Default false.
   */
  readonly delayReject?: boolean;
  /** Door name for logs (default "milter"). */
  readonly name?: string;
}

export const MILTER_DEFAULTS = Object.freeze({ maxPacket: DEFAULT_MAX_PACKET, readTimeoutMs: 600_000, progressIntervalMs: 10_000, socketMode: 0o660 });

export function createMilterDoor(options: MilterDoorOptions, deps: DoorDeps): Door {
  const address = parseListenAddress(options.listen);
  if (typeof address === 'string') throw new Error(address);
  const requested = options.maxPacket ?? MILTER_DEFAULTS.maxPacket;
  if (!Number.isInteger(requested) || requested < 1 || requested > 64 * 1024 * 1024) throw new Error(`milter maxPacket ${requested} must be an integer up to 67108864`);
  // Never below one full body chunk plus its command byte: Postfix fills chunks to exactly 65535 bytes.
  const maxPacket = Math.max(requested, MILTER_CHUNK_SIZE + 1);
  const server = new MilterServer(
    {
      address,
      maxPacket,
      readTimeoutMs: options.readTimeoutMs ?? MILTER_DEFAULTS.readTimeoutMs,
      progressIntervalMs: Math.max(100, options.progressIntervalMs ?? MILTER_DEFAULTS.progressIntervalMs),
      socketMode: options.socketMode ?? MILTER_DEFAULTS.socketMode,
      noReply: options.noReply === true,
      delayReject: options.delayReject === true,
    },
    deps,
  );
  return {
    name: options.name ?? 'milter',
    start: () => server.start(),
    stop: (drainMs) => server.stop(drainMs),
    update: (d) => server.update(d),
    get addresses() {
      return server.addresses;
    },
    get activeSessions() {
      return server.activeSessions;
    },
  };
}
