/**
 * The arithmetic every scorer shares on a row of logits (or log-likelihoods): stable log Σ exp,
 * argmax (first index of the largest value) and log-softmax, in float64 with the max subtracted.
 * Rows are `x[off … off+n)`, so a [rows, vocab] buffer is read in place.
 */

/** log Σ exp(x) over the row, stable; −Infinity for an all −Infinity row. */
export function logSumExp(x: ArrayLike<number>, off = 0, n = x.length - off): number {
  let m = -Infinity;
  for (let v = 0; v < n; v++) if (x[off + v] > m) m = x[off + v];
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let v = 0; v < n; v++) s += Math.exp(x[off + v] - m);
  return m + Math.log(s);
}

/** First index (within the row) of the largest value. */
export function argmax(x: ArrayLike<number>, off = 0, n = x.length - off): number {
  let best = 0;
  for (let v = 1; v < n; v++) if (x[off + v] > x[off + best]) best = v;
  return best;
}

/** log-softmax of the row. */
export function logSoftmaxAt(x: ArrayLike<number>, off: number, n: number): Float64Array {
  const lz = logSumExp(x, off, n);
  const out = new Float64Array(n);
  for (let v = 0; v < n; v++) out[v] = x[off + v] - lz;
  return out;
}
