/**
 * The host's byte order. quantlens's binary state files (correlation co-moments, checkpoint
 * ledger files) are raw little-endian arrays written straight from typed arrays, so a big-endian
 * host is refused rather than writing files no other host reads back.
 */
import { QuantlensError } from './errors.ts';

/** True when typed arrays store their elements little-endian (every host Node ships for today). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Refuses, naming `what` (e.g. "correlation state files"), on a big-endian host. */
export function requireLittleEndian(what: string): void {
  if (!LITTLE_ENDIAN) throw new QuantlensError('STATE', `not supported: ${what} on a big-endian host`);
}
