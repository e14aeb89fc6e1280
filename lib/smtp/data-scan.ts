/**
 * The DATA framer's fast path: `scanData(buffer, start)` from sluice's native addon (native/src/data_scan.c)
 * returns the first position at or after `start` that needs the framer's attention (a bare CR or LF, a CR as the
 * last byte, a "." after an LF), or `buffer.length`; the framer then skips ordinary lines in one call instead of
 * two searches per line. Without the addon (or with SLUICE_DATA_SCAN=js) the framer's own loop does it all: the
 * result is the same, only slower.
 */
import { loadNativeAddon } from '../core/native-addon.js';

export type DataScan = (data: Buffer, start: number) => number;

function load(): DataScan | undefined {
  if (process.env['SLUICE_DATA_SCAN'] === 'js') return undefined;
  const scan = loadNativeAddon()?.['scanData'];
  return typeof scan === 'function' ? (scan as DataScan) : undefined;
}

/** The native scan, or undefined when it is not available (then the framer uses its JavaScript loop). */
export const NATIVE_DATA_SCAN: DataScan | undefined = load();
