/**
 * The logging interface lib/ code writes to (pino-compatible: object first, then message).
 * The daemon hands in a pino logger; `NULL_LOGGER` is for code paths that log nothing.
 * Client text goes in the object, never in the message, so it can never act as a format string.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: object): Logger;
  isLevelEnabled?(level: string): boolean;
}

const noop = (): void => undefined;
export const NULL_LOGGER: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => NULL_LOGGER,
  isLevelEnabled: () => false,
};
