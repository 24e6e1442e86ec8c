/** Dense row-major matrix helpers for weight rewriting (converters, quantizers, dequantizers). */

/**
 * A [rows, cols] row-major matrix as [cols, rows]. 64×64 tiles keep both the reads and the strided
 * writes of a tile in cache; a plain double loop misses on every write once an output row exceeds
 * the cache, which makes it several times slower on 7B-sized weights.
 */
export function transposeMatrix(m: Float32Array, rows: number, cols: number, into?: Float32Array): Float32Array {
  // `into` (rows × cols floats, reused by a caller that streams weights): no fresh pages to fault in.
  const t = into ?? new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) t[c * rows + r] = m[row + c];
      }
    }
  }
  return t;
}
