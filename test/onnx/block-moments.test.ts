/**
 * The pipeline's in-graph moments (onnx/block-moments.ts) against a float64 brute force over the
 * same tensor fetched from the same run, real tokens only: min, max and near-zero counts exactly,
 * mean and M2 within the float32 block-sum bounds the module header derives (with d = x − shift:
 * the mean exactly as a float64 scan (1e-12), Σd² within (γ_8 + 3ε)·Σd², so M2 within that plus
 * the float64 terms). On an opset-17 model (axes as inputs for
 * ReduceSum, attributes for ReduceMin/Max), an opset-11 model (attributes everywhere), a built
 * model with activations far from zero and more than one block per batch, and right padding, and one
 * with activations centred near zero (|mean| ≈ 0.001·std); an opset-9 model (near-zero counts in float32,
 * MatMulInteger comes at opset 10).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { augmentForRun } from '../../onnx/augment.ts';
import { BLOCK_ROWS, BlockMoments, blockFeeds, blockLayout, blockMomentsFragment } from '../../onnx/block-moments.ts';
import { appendGraphFragment, GraphBuilder } from '../../onnx/builder.ts';
import { sharedPath } from '../helpers/shared.ts';
import { rng, gaussian } from '../operators/estimators/synthetic.ts';

const EPS = 2 ** -24;
const GAMMA = (BLOCK_ROWS * EPS) / (1 - BLOCK_ROWS * EPS);

interface Case {
  x: Float32Array;
  width: number;
  B: number;
  T: number;
  lengths: number[];
  padSide: 'left' | 'right';
  moments: BlockMoments;
  out: Record<string, ort.Tensor>;
}

/** Every statistic of the fragment against a float64 scan of the fetched tensor's real tokens. */
function checkAgainstBruteForce(c: Case): { worstMean: number; worstM2: number } {
  const { x, width, B, T, lengths } = c;
  const real = new Uint8Array(B * T);
  lengths.forEach((len, b) => {
    const start = c.padSide === 'right' ? 0 : T - len;
    for (let p = 0; p < len; p++) real[b * T + start + p] = 1;
  });
  const n = lengths.reduce((a, b) => a + b, 0);
  const [m] = c.moments.read(c.out, n, 'fp32');
  let worstMean = 0, worstM2 = 0;
  for (let j = 0; j < width; j++) {
    let sum = 0, absD = 0, sumD = 0, sqD = 0, mn = Infinity, mx = -Infinity, nz = 0;
    for (let r = 0; r < B * T; r++) {
      if (!real[r]) continue;
      const v = x[r * width + j];
      const d = v - m.shift[j];
      sum += v; sumD += d; absD += Math.abs(d); sqD += d * d; mn = Math.min(mn, v); mx = Math.max(mx, v);
      if (v > -0.1 && v < 0.1) nz++;
    }
    const mean = sum / n;
    let m2 = 0;
    for (let r = 0; r < B * T; r++) if (real[r]) m2 += (x[r * width + j] - mean) ** 2;
    const gotMean = m.shift[j] + m.s1[j] / n;
    const gotM2 = m.s2[j] - (m.s1[j] * m.s1[j]) / n;
    const e1 = 1e-12 * absD;
    // 1e-12 relative slack for the float64 brute force's own rounding.
    const meanErr = Math.abs(gotMean - mean), meanBound = e1 / n + 1e-12 * Math.abs(mean) + 1e-300;
    const m2Err = Math.abs(gotM2 - m2), m2Bound = (GAMMA + 3 * EPS) * sqD + (2 * Math.abs(sumD) * e1 + e1 * e1) / n + 1e-12 * m2 + 1e-300;
    assert.ok(meanErr <= meanBound, `mean[${j}] ${gotMean} vs ${mean}: error ${meanErr} > bound ${meanBound}`);
    assert.ok(m2Err <= m2Bound, `M2[${j}] ${gotM2} vs ${m2}: error ${m2Err} > bound ${m2Bound}`);
    worstMean = Math.max(worstMean, meanErr / meanBound);
    worstM2 = Math.max(worstM2, m2Err / m2Bound);
    assert.is(m.min[j], mn, `min[${j}]`);
    assert.is(m.max[j], mx, `max[${j}]`);
    assert.is(m.nearZero[j], nz, `near-zero[${j}]`);
  }
  return { worstMean, worstM2 };
}

async function checkModel(file: string, opset: number, tensor: string, width: number, intType: 'int64' | 'int32', extra: (B: number, T: number, mask: number[]) => Record<string, ort.Tensor>) {
  const bytes = augmentForRun(readFileSync(file), { captures: [tensor], moments: { tensors: [{ name: tensor, width }], opset } });
  const s = await ort.InferenceSession.create(bytes);
  const B = 3, T = 6;
  const lengths = [6, 2, 4];
  const ids: number[] = [], mask: number[] = [];
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) { const real = t >= T - lengths[b]; mask.push(real ? 1 : 0); ids.push(real ? 5 + ((b * 7 + t * 3) % 200) : 0); }
  const mk = (v: number[]) => (intType === 'int64' ? new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [B, T]) : new ort.Tensor('int32', Int32Array.from(v), [B, T]));
  const moments = new BlockMoments([{ layer: 0, tensor, width }], { lo: -0.1, hi: 0.1 });
  const out = await s.run({ input_ids: mk(ids), attention_mask: mk(mask), ...extra(B, T, mask), ...moments.feeds({ lengths: Int32Array.from(lengths), seqLen: T }) });
  checkAgainstBruteForce({ x: out[tensor].data as Float32Array, width, B, T, lengths, padSide: 'left', moments, out });
  await s.release();
}

test('opset 17 (stories260K): in-graph moments of the real tokens within the float32 bound of a float64 scan', async () => {
  const p = sharedPath('models/stories260K-onnx/model.onnx', 'in-graph moments, opset 17');
  if (!p) return;
  await checkModel(p, 17, '/model/layers.2/mlp/act_fn/Mul_output_0', 172, 'int64', () => ({}));
});

test('opset 11 (tiny-random-gpt2, fused FastGelu): the attribute forms of the reductions', async () => {
  const p = sharedPath('models/tiny-random-gpt2-fp32/past.onnx', 'in-graph moments, opset 11');
  if (!p) return;
  await checkModel(p, 11, 'FullyConnect_MatMul_3_input', 128, 'int32', (B, T, mask) => {
    const pos: number[] = [];
    for (let b = 0; b < B; b++) { let k = 0; for (let t = 0; t < T; t++) pos.push(mask[b * T + t] ? k++ : 0); }
    const extra: Record<string, ort.Tensor> = { position_ids: new ort.Tensor('int32', Int32Array.from(pos), [B, T]) };
    for (let i = 0; i < 5; i++) extra[`past_${i}`] = new ort.Tensor('float32', new Float32Array(0), [2, B, 4, 0, 8]);
    return extra;
  });
});

/** A model that outputs its input X [B, T, W] through Identity, with the fragment on X. */
async function identityCase(x: Float32Array, B: number, T: number, width: number, lengths: number[], padSide: 'left' | 'right', opset: number): Promise<Case> {
  const g = new GraphBuilder('identity');
  g.input('X', 'float', [B, T, width]);
  g.node('Identity', ['X'], ['Y']);
  g.output('Y', 'float', [B, T, width]);
  const moments1 = { tensors: [{ name: 'Y', width }], opset };
  // augmentForRun's last-logits Slice takes inputs from opset 10: an opset-9 model gets the fragment alone.
  const bytes = opset >= 10 ? augmentForRun(g.toModel({ opset }), { captures: [], logitsName: 'Y', moments: moments1 }) : appendGraphFragment(g.toModel({ opset }), blockMomentsFragment(moments1.tensors, opset));
  const s = await ort.InferenceSession.create(bytes);
  const moments = new BlockMoments([{ layer: 0, tensor: 'Y', width }], { lo: -0.1, hi: 0.1 });
  const out = await s.run({ X: new ort.Tensor('float32', x, [B, T, width]), ...moments.feeds({ lengths: Int32Array.from(lengths), seqLen: T, padSide }) });
  await s.release();
  return { x, width, B, T, lengths, padSide, moments, out };
}

test('activations far from zero, several blocks per batch, right padding, opset 18: within the bound, M2 free of cancellation', async () => {
  const r = rng(5);
  const B = 4, T = 300, W = 12;
  const lengths = [300, 17, 255, 120]; // 692 real rows: 87 blocks, the last one partly repeats
  const x = new Float32Array(B * T * W);
  for (let i = 0; i < x.length; i++) {
    const c = i % W;
    // planted: offsets up to 3000 with unit spread, a constant column, values on the near-zero bounds, pads huge
    x[i] = c === 0 ? 3.25 : c === 1 ? [-0.1, 0.1, 0.05, -0.05][i % 4] : c * 250 + gaussian(r) * (c % 3 === 0 ? 0.01 : 1);
  }
  for (const side of ['left', 'right'] as const) {
    const withPads = Float32Array.from(x);
    // Pads carry values no statistic may see.
    lengths.forEach((len, b) => {
      for (let t = 0; t < T; t++) {
        const isReal = side === 'right' ? t < len : t >= T - len;
        if (!isReal) for (let c = 0; c < W; c++) withPads[(b * T + t) * W + c] = 1e6;
      }
    });
    const c = await identityCase(withPads, B, T, W, lengths, side, 18);
    const worst = checkAgainstBruteForce(c);
    const [m] = c.moments.read(c.out, 692, 'fp32');
    assert.is(m.s2[0] - (m.s1[0] * m.s1[0]) / 692, 0, 'a constant column has M2 0');
    assert.ok(worst.worstM2 < 0.5 && worst.worstMean < 0.5, `errors well inside the bounds (${side}: ${JSON.stringify(worst)})`);
  }
});

test('activations centred near zero (|mean| ≈ 0.001·std), several blocks: within the bound, mean within 1e-6 relative of a float64 scan', async () => {
  const r = rng(9);
  const B = 3, T = 400, W = 6;
  const lengths = [400, 333, 211]; // 944 real rows: 118 blocks
  const x = new Float32Array(B * T * W);
  // Column c: spread 10^(c − 2), mean 0.001 of it (the stories260K case the float64 Σx is for).
  for (let i = 0; i < x.length; i++) { const s = 10 ** ((i % W) - 2); x[i] = s * (0.001 + gaussian(r)); }
  const c = await identityCase(x, B, T, W, lengths, 'left', 17);
  const worst = checkAgainstBruteForce(c);
  const [m] = c.moments.read(c.out, 944, 'fp32');
  for (let j = 0; j < W; j++) {
    let sum = 0;
    lengths.forEach((len, b) => { for (let t = T - len; t < T; t++) sum += x[(b * T + t) * W + j]; });
    const mean = sum / 944, got = m.shift[j] + m.s1[j] / 944;
    assert.ok(Math.abs(got - mean) <= 1e-6 * Math.abs(mean), `mean[${j}] ${got} vs ${mean}`);
  }
  assert.ok(worst.worstM2 < 0.5 && worst.worstMean < 0.5, `errors well inside the bounds (${JSON.stringify(worst)})`);
});

test('opset 9 (before MatMulInteger): the float32 near-zero counts, same exact statistics', async () => {
  const r = rng(3);
  const B = 2, T = 40, W = 5;
  const lengths = [40, 13]; // 53 real rows: 7 blocks, the last one partly repeats
  const x = Float32Array.from({ length: B * T * W }, (_, i) => (i % W === 0 ? [-0.1, 0.1, 0.05][i % 3] : (i % W) * 0.02 + 0.05 * gaussian(r)));
  const c = await identityCase(x, B, T, W, lengths, 'left', 9);
  const worst = checkAgainstBruteForce(c);
  assert.ok(worst.worstM2 < 0.5 && worst.worstMean < 0.5, `errors well inside the bounds (${JSON.stringify(worst)})`);
});

test('feeds: real rows follow the padding side, blocks of 8 filled with weight-0 repeats', () => {
  const left = blockFeeds({ lengths: Int32Array.of(2, 3), seqLen: 3 });
  assert.equal(Array.from(left.rows), [1, 2, 3, 4, 5, 1, 1, 1]);
  assert.equal(Array.from(left.weights), [1, 1, 1, 1, 1, 0, 0, 0]);
  assert.is(left.blocks, 1);
  const right = blockFeeds({ lengths: Int32Array.of(2, 3), seqLen: 3, padSide: 'right' });
  assert.equal(Array.from(right.rows).slice(0, 5), [0, 1, 3, 4, 5]);
  const many = blockFeeds({ lengths: Int32Array.of(9, 8), seqLen: 9 });
  assert.is(many.blocks, 3);
  assert.is(many.weights.reduce((a, b) => a + b, 0), 17);
  assert.is(many.group, 3, 'up to 16 blocks form one group');
  assert.is(BLOCK_ROWS, 8);
});

test('block layout: groups divide the blocks, at most 3 blocks of repeats, none up to 16 blocks', () => {
  for (let n = 1; n <= 20_000; n++) {
    const needed = Math.max(1, Math.ceil(n / BLOCK_ROWS));
    const { blocks, group } = blockLayout(n);
    assert.ok(blocks >= needed && blocks - needed <= 3, `n ${n}: ${blocks} blocks for ${needed} needed`);
    assert.is(blocks % group, 0, `n ${n}: group ${group} divides ${blocks} blocks`);
    if (needed <= 16) assert.equal([blocks, group], [needed, needed], `n ${n}: one group`);
    else assert.ok(group >= 4 && group <= 8, `n ${n}: group ${group}`);
  }
  // The cases the tests above run: 692 rows → 87 blocks → 88 in groups of 8; 944 → 118 → 119 in groups of 7.
  assert.equal(blockLayout(692), { blocks: 88, group: 8 });
  assert.equal(blockLayout(944), { blocks: 119, group: 7 });
  const f = blockFeeds({ lengths: Int32Array.of(300, 17, 255, 120), seqLen: 300 });
  assert.is(f.rows.length, 88 * BLOCK_ROWS);
  assert.is(f.weights.reduce((a, b) => a + b, 0), 692, 'the added block of repeats weighs 0');
});

test.run();
