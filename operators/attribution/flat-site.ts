/**
 * Activation sites stored flat as [batch·sequence, width] (an MLP computed by Gemm, which is always
 * 2-D, as in OPT exports: Reshape [B, T, D] → [B·T, D] → Gemm → act → Gemm → Reshape back).
 * LIG attributes them as [batch, sequence, width]: a batch-major flattening holds exactly the
 * memory of the 3-D tensor, so feeding [R·S, W] and reading row r·S + t as (example r, position t)
 * changes nothing else. Which axes were flattened is told at runtime, not from names:
 *  - on the probe batch (onnx/backward/probe.ts) the leading dim equals batch × sequence;
 *  - the order is batch-major: each row of a two-example batch equals that example run alone
 *    (a sequence-major flattening, [T·B, W], would interleave the examples and is refused).
 */
import { QuantlensError } from '../../core/errors.ts';
import { PROBE_BATCH } from '../../onnx/backward/probe.ts';
import type { TensorMeta } from '../../onnx/backward/emitter.ts';

/** True when the probed tensor is rank 2 with a leading dim of the probe's batch × sequence. */
export function isFlatSite(meta: TensorMeta): boolean {
  return meta.shape.length === 2 && meta.shape[0] === PROBE_BATCH.ids.length * PROBE_BATCH.seqLen;
}

/** Two equal-length rows with different tokens at every position but the first (ids < 6, as the probe's). */
const ROWS = [Int32Array.from([1, 5, 4, 3, 2]), Int32Array.from([1, 3, 2, 5, 4])];

/**
 * Refuses, in one line, a flat site whose rows are not (example, position) in batch-major order.
 * `original(rows)` returns the site's values for those rows run together, [rows·S, W] flat.
 */
export async function checkBatchMajor(s: { tensor: string; width: number }, original: (rows: Int32Array[]) => Promise<Float32Array>): Promise<void> {
  const both = await original(ROWS);
  const n = ROWS[0].length * s.width;
  let scale = 0;
  let err = both.length === 2 * n ? 0 : Infinity;
  for (let b = 0; b < ROWS.length && err !== Infinity; b++) {
    const alone = await original([ROWS[b]]);
    for (let j = 0; j < n; j++) {
      scale = Math.max(scale, Math.abs(alone[j]));
      err = Math.max(err, Math.abs(both[b * n + j] - alone[j]));
    }
  }
  const rel = err / Math.max(scale, 1e-30);
  if (!(rel <= 1e-4)) {
    throw new QuantlensError('UNSUPPORTED', `LIG: "${s.tensor}" is [${2 * ROWS[0].length}, ${s.width}] for 2 examples of ${ROWS[0].length} tokens, but row b·${ROWS[0].length} + t is not example b at position t (relative difference ${rel.toExponential(2)} from each example alone); only a batch-major [batch·sequence, width] flattening is supported`);
  }
}
