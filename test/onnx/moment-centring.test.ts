/**
 * Why the in-graph moments centre each batch on its own mean: the one-pass M2 = Σx² − (Σx)²/n
 * cancels when activations sit far from zero. With values 3000 + small steps, uncentred float64
 * sums lose about five digits of the variance; the graph's centred sums, merged by the neurons
 * estimator, match a two-pass float64 brute force to rounding.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { columnMomentsModel, COLUMN_MOMENTS_MASK, COLUMN_MOMENTS_X, InGraphMoments } from '../../onnx/moment-stats.ts';
import { NeuronsEstimator } from '../../operators/estimators/neurons.ts';
import { rng } from '../operators/estimators/synthetic.ts';

const W = 8;
const batches = [40, 25, 60].map((rows, b) => {
  const r = rng(11 + b);
  // Multiples of 1/256 near 3000 are exact in float32 (24-bit mantissa), so the input has no rounding.
  return { rows, values: Float32Array.from({ length: rows * W }, () => 3000 + Math.floor(r() * 64) / 256) };
});
const column = (c: number) => batches.flatMap((b) => Array.from({ length: b.rows }, (_, i) => b.values[i * W + c]));

function twoPassVariance(c: number): number {
  const col = column(c);
  const mean = col.reduce((a, x) => a + x, 0) / col.length;
  return col.reduce((a, x) => a + (x - mean) ** 2, 0) / col.length;
}

/** What uncentred one-pass sums give (the pipeline's old zero shift). */
function uncentredVariance(c: number): number {
  const col = column(c);
  let s1 = 0, s2 = 0;
  for (const x of col) { s1 += x; s2 += x * x; }
  return (s2 - (s1 * s1) / col.length) / col.length;
}

test('in-graph centred moments keep the variance exact where uncentred sums cancel', async () => {
  const session = await ort.InferenceSession.create(columnMomentsModel(W));
  const moments = new InGraphMoments([{ layer: 0, tensor: COLUMN_MOMENTS_X, width: W }], { lo: -0.1, hi: 0.1 });
  const est = new NeuronsEstimator();
  for (const b of batches) {
    const out = await session.run({
      [COLUMN_MOMENTS_X]: new ort.Tensor('float32', b.values, [1, b.rows, W]),
      [COLUMN_MOMENTS_MASK]: new ort.Tensor('int64', new BigInt64Array(b.rows).fill(1n), [1, b.rows]),
      ...moments.feeds(),
    }, moments.fetches());
    const [m] = moments.read(out, b.rows, 'fp32');
    // The shift the graph used is the batch mean.
    for (let c = 0; c < W; c++) {
      let mean = 0;
      for (let i = 0; i < b.rows; i++) mean += b.values[i * W + c];
      mean /= b.rows;
      assert.ok(Math.abs(m.shift[c] - mean) < 1e-9, `batch mean ${c}`);
    }
    await est.update(m);
  }
  await session.release();
  const v = est.byKey.get({ precision: 'fp32', layer: 0, tensor: COLUMN_MOMENTS_X }, W).variance();
  let worstCentred = 0, worstUncentred = 0;
  for (let c = 0; c < W; c++) {
    const want = twoPassVariance(c);
    worstCentred = Math.max(worstCentred, Math.abs(v[c] - want) / want);
    worstUncentred = Math.max(worstUncentred, Math.abs(uncentredVariance(c) - want) / want);
  }
  assert.ok(worstCentred < 1e-12, `centred relative error ${worstCentred}`);
  assert.ok(worstUncentred > 1e-9, `uncentred relative error ${worstUncentred} (expected visible cancellation)`);
});

test.run();
