/** Dense row-major matrix helpers for weight rewriting (converters, quantizers, dequantizers). */

/**
 * A [rows, cols] row-major matrix as [cols, rows]. 64×64 tiles keep both the reads and the strided
 * writes of a tile in cache; a plain double loop misses on every write once an output row exceeds
 * the cache, which makes it several times slower on 7B-sized weights.
 */
export function transposeMatrix(m: Float32Array, rows: number, cols: number, into?: Float32Array): Float32Array {
  // `into` (rows × cols floats, reused by a caller that streams weights): no fresh pages to fault in.
  const t = into ?? new Float32Array(rows * cols);
  transposeColumns(m, rows, cols, 0, cols, t);
  return t;
}

/** Columns c0..c1 of a [rows, cols] row-major matrix as a [c1 − c0, rows] row-major block in `out` (tiled as above). */
export function transposeColumns(m: Float32Array, rows: number, cols: number, c0: number, c1: number, out: Float32Array): void {
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let cb = c0; cb < c1; cb += B) {
      const ce = Math.min(c1, cb + B);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = cb; c < ce; c++) out[(c - c0) * rows + r] = m[row + c];
      }
    }
  }
}
