/**
 * One linear weight as the quantizers read it, in the layout it is stored in, and the two layouts
 * the quantizers want from it:
 *  - B [K, N] (ONNX MatMul's B: llm-int8's CB and dynamic int8 keep it);
 *  - rows of W = Bᵀ [N, K] (bnb's flat blocks and MatMulNBits' blocks along K), a strip of rows at
 *    a time, so no whole transposed copy is ever made.
 *
 * Memory: a float32 weight in external data is read straight into one buffer that is reused for
 * every weight of the rewrite (it grows to the largest), so reading costs one tensor
 * of memory and no page faults after the first; other encodings (fp16, float_data…) decode into a
 * fresh array as before.
 */
import { closeSync, openSync } from 'node:fs';
import { DTYPE } from '../dtypes.ts';
import { transposeColumns, transposeMatrix } from '../matrix.ts';
import { readFully, readTensorFloat32, type OnnxModel, type TensorInfo } from '../model-reader.ts';

export interface SourceWeight {
  /** Float32 values, row-major: B [K, N] when layout is 'KN', W = Bᵀ [N, K] when 'NK'. */
  data: Float32Array;
  layout: 'KN' | 'NK';
  K: number;
  N: number;
}

/** A grow-only float32 buffer, reused across weights (a view of its first n elements is handed out). */
export class FloatScratch {
  private buf = new Float32Array(0);
  take(n: number): Float32Array {
    if (n > this.buf.length) this.buf = new Float32Array(n);
    return this.buf.subarray(0, n);
  }
}

function readInto(fd: number, out: Uint8Array, position: number, file: string): void {
  const got = readFully(fd, out, position);
  if (got < out.length) throw new RangeError(`unexpected end of ${file} at byte ${position + got}`);
}

/** The weight's float32 values; float32 external data lands in `scratch` (valid until its next use). */
export function readWeightValues(m: OnnxModel, t: TensorInfo, scratch: FloatScratch): Float32Array {
  const loc = t.location;
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.dataType === DTYPE.float && loc.kind === 'external' && loc.file && (loc.length < 0 || loc.length === 4 * n)) {
    const out = scratch.take(n);
    const fd = openSync(loc.file, 'r');
    try {
      readInto(fd, new Uint8Array(out.buffer, out.byteOffset, 4 * n), loc.offset, loc.file);
    } finally {
      closeSync(fd);
    }
    return out;
  }
  if (t.dataType === DTYPE.float && loc.kind === 'raw' && loc.length === 4 * n) {
    // A file source reads into a fresh aligned buffer; bytes of an in-memory model may be misaligned.
    const bytes = m.source.read(loc.offset, loc.length);
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    const out = scratch.take(n);
    new Uint8Array(out.buffer, out.byteOffset, 4 * n).set(bytes);
    return out;
  }
  return readTensorFloat32(m, t);
}

/** B [K, N]: the data itself, or W transposed into `scratch`. */
export function asKN(w: SourceWeight, scratch: FloatScratch): Float32Array {
  if (w.layout === 'KN') return w.data;
  return transposeMatrix(w.data, w.N, w.K, scratch.take(w.K * w.N));
}

/**
 * Visit W = Bᵀ in strips of `rowsPerStrip` rows (the last may be shorter): `visit(rows, n0, count)`
 * gets rows n0..n0+count−1 as [count, K] row-major. A 'NK' weight is visited in place; a 'KN' one
 * is transposed a strip at a time into a buffer of rowsPerStrip × K floats.
 */
export function forEachRowStrip(w: SourceWeight, rowsPerStrip: number, visit: (rows: Float32Array, n0: number, count: number) => void): void {
  const { K, N } = w;
  const strip = w.layout === 'KN' ? new Float32Array(Math.min(N, rowsPerStrip) * K) : null;
  for (let n0 = 0; n0 < N; n0 += rowsPerStrip) {
    const count = Math.min(rowsPerStrip, N - n0);
    if (!strip) visit(w.data.subarray(n0 * K, (n0 + count) * K), n0, count);
    else {
      const out = strip.subarray(0, count * K);
      transposeColumns(w.data, K, N, n0, n0 + count, out);
      visit(out, n0, count);
    }
  }
}

/** A [K, N] matrix as a SourceWeight (tests and callers holding B). */
export function kn(b: Float32Array, K: number, N: number): SourceWeight {
  return { data: b, layout: 'KN', K, N };
}

/** W = Bᵀ [N, K] as a SourceWeight. */
export function nk(w: Float32Array, K: number, N: number): SourceWeight {
  return { data: w, layout: 'NK', K, N };
}
