/**
 * Typed array <-> JSON-safe string. Estimator states must survive JSON.stringify exactly (shard
 * merge and resume compare to 1e-9), so float64 arrays travel as base64 of their raw bytes rather
 * than as decimal numbers. Byte order is the host's (little-endian on every platform Node ships).
 */
import { QuantlensError } from '../../core/errors.ts';

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Copies the decoded bytes into a fresh (aligned) buffer so the typed array view is valid. */
function decodeBytes(s: string, bytesPerElement: number, what: string): ArrayBuffer {
  if (typeof s !== 'string') throw new QuantlensError('STATE', `state field ${what} is not a base64 string`);
  const buf = Buffer.from(s, 'base64');
  if (buf.byteLength % bytesPerElement !== 0) {
    throw new QuantlensError('STATE', `state field ${what} has ${buf.byteLength} bytes, not a multiple of ${bytesPerElement}`);
  }
  const out = new ArrayBuffer(buf.byteLength);
  new Uint8Array(out).set(buf);
  return out;
}

/** base64 of a typed array's raw bytes (any element type). */
export function encodeTyped(a: ArrayBufferView): string {
  return bytesOf(a).toString('base64');
}

/** The typed array a state field holds, checked for its element size and, when given, its length. */
function decodeTyped<T extends Float64Array | Float32Array | Int32Array>(
  C: { new (b: ArrayBuffer): T; BYTES_PER_ELEMENT: number },
  s: string,
  expectedLength: number | undefined,
  what: string,
): T {
  const out = new C(decodeBytes(s, C.BYTES_PER_ELEMENT, what));
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new QuantlensError('STATE', `state field ${what} has ${out.length} values, expected ${expectedLength}`);
  }
  return out;
}

export const encodeF64 = (a: Float64Array): string => encodeTyped(a);
export const encodeF32 = (a: Float32Array): string => encodeTyped(a);

export function decodeF64(s: string, expectedLength?: number, what = 'float64 array'): Float64Array {
  return decodeTyped(Float64Array, s, expectedLength, what);
}

export function decodeF32(s: string, expectedLength?: number, what = 'float32 array'): Float32Array {
  return decodeTyped(Float32Array, s, expectedLength, what);
}

export function decodeI32(s: string, expectedLength?: number, what = 'int32 array'): Int32Array {
  return decodeTyped(Int32Array, s, expectedLength, what);
}

export { GrowableArray, GrowableF64 } from '../../core/growable-array.ts';
