/**
 * LIG on flat [batch·sequence, d_ff] activation sites (an MLP written with Gemm, as OPT exports
 * are): the same model written three ways, with identical weights,
 *   3d:   x [B,T,D] ─MatMul─▸ act [B,T,F] ─MatMul─▸ …              (the site LIG has always taken)
 *   flat: x ─Reshape [B·T,D]─▸ Gemm ─▸ act [B·T,F] ─Gemm─▸ Reshape [B,T,D] ─▸ …
 *   tb:   x ─Transpose [T,B,D]─▸ Reshape [T·B,D]─▸ Gemm ─▸ act [T·B,F] ─▸ … (sequence-major)
 * flat's attributions equal 3d's (a different graph computing the same function), its gradient at
 * the [B·T, F] override equals central differences, and tb is refused in one line (its rows are
 * not (example, position) in batch-major order, which shapes alone cannot tell).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../onnx/builder.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { buildFeeds } from '../../../onnx/feeds.ts';
import { gradName, OBJECTIVE_OUTPUT, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { attributeBatch, createAttributionSession } from '../../../operators/attribution/lig.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { mulberry32 } from '../../../core/random.ts';
import { fdAgrees, plusMinus } from '../../onnx/backward/fd-harness.ts';

const V = 7, D = 4, F = 6;

function model(layout: '3d' | 'flat' | 'tb'): Uint8Array {
  const g = new GraphBuilder(`mlp-${layout}`);
  const r = mulberry32(3);
  const rand = (dims: number[], s = 1) => g.constF32(Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * s), dims);
  const [E, W1, b1, W2, b2, Wo] = [rand([V, D], 1.5), rand([F, D]), rand([F], 0.5), rand([F, D]), rand([D], 0.5), rand([D, V], 1.5)];
  g.input('input_ids', 'int64', ['batch', 'seq']);
  const [x] = g.node('Gather', [E, 'input_ids'], 1, { axis: 0 });
  let y: string;
  if (layout === '3d') {
    const [h] = g.node('Add', [g.node('MatMul', [x, g.node('Transpose', [W1], 1, { perm: [1, 0] })[0]])[0], b1]);
    g.node('Tanh', [h], ['act']);
    [y] = g.node('Add', [g.node('MatMul', ['act', W2])[0], b2]);
  } else {
    const src = layout === 'tb' ? g.node('Transpose', [x], 1, { perm: [1, 0, 2] })[0] : x;
    const [x2] = g.node('Reshape', [src, g.constI64([-1, D])]);
    const [h] = g.node('Gemm', [x2, W1, b1], 1, { transB: 1 });
    g.node('Tanh', [h], ['act']);
    const [y2] = g.node('Gemm', ['act', W2, b2]);
    const [y3] = g.node('Reshape', [y2, g.node('Shape', [src])[0]]);
    y = layout === 'tb' ? g.node('Transpose', [y3], 1, { perm: [1, 0, 2] })[0] : y3;
  }
  // Residual plus a mean over positions, so every position's activation reaches the last logits.
  const [z] = g.node('Add', [g.node('Add', [y, x])[0], g.node('ReduceMean', [y], 1, { axes: [1], keepdims: 1 })[0]]);
  g.node('MatMul', [z, Wo], ['logits']);
  g.output('logits', 'float', ['batch', 'seq', V]);
  return g.toModel({ opset: 17 });
}

const ROWS = [Int32Array.from([1, 4, 6, 2, 5, 3]), Int32Array.from([1, 2, 3, 5])];

test('flat [B·T, F] site: LIG attributions = the same model with a [B, T, F] site; completeness', async () => {
  const flat = await createAttributionSession(readOnnxModel(model('flat')), 'act');
  const ref = await createAttributionSession(readOnnxModel(model('3d')), 'act');
  assert.ok(flat.flat && !ref.flat, 'flat detected only for the Gemm layout');
  assert.is(flat.width, F);
  const examples = ROWS.map((ids) => ({ ids }));
  const a = await attributeBatch(flat, examples, 'act', { steps: 24, onWarning: () => {} });
  const b = await attributeBatch(ref, examples, 'act', { steps: 24, onWarning: () => {} });
  a.forEach((r, i) => {
    assert.is(r.positions, ROWS[i].length);
    assert.is(r.target, b[i].target);
    let scale = 0;
    let diff = 0;
    r.attributions.forEach((v, j) => ((scale = Math.max(scale, Math.abs(b[i].attributions[j]))), (diff = Math.max(diff, Math.abs(v - b[i].attributions[j])))));
    assert.ok(scale > 1e-3, `non-trivial attributions (${scale})`);
    // Every position is attributed, not only the last (the mean over positions mixes them).
    for (let p = 0; p < r.positions; p++) assert.ok(r.attributions.subarray(p * F, (p + 1) * F).some((v) => Math.abs(v) > 1e-6), `row ${i} position ${p}`);
    assert.ok(diff <= 1e-5 * scale + 1e-7, `row ${i}: flat vs 3-D attributions differ by ${diff} (scale ${scale})`);
    assert.ok(Math.abs(r.F_input - b[i].F_input) < 1e-5 && Math.abs(r.F_baseline - b[i].F_baseline) < 1e-5, 'same objective');
    assert.ok(r.completenessError < 1e-3, `completeness ${r.completenessError}`);
  });
  await flat.session.release();
  await ref.session.release();
});

test('flat [B·T, F] site: gradient at the [B·T, F] override = central differences (left-padded batch of two)', async () => {
  const s = await createAttributionSession(readOnnxModel(model('flat')), 'act');
  const S = ROWS[0].length;
  const feeds = buildFeeds(s.plan, { seqLen: S, lengths: Int32Array.from(ROWS.map((x) => x.length)), ids: ROWS }, 0);
  const r = mulberry32(9);
  const a = Float32Array.from({ length: 2 * S * F }, () => r() * 2 - 1);
  const run = async (x: Float32Array) => {
    const out = await s.session.run({ ...feeds, [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from([3n, 5n]), [2]), [overrideName('act')]: new ort.Tensor('float32', x, [2 * S, F]) });
    const Fv = out[OBJECTIVE_OUTPUT].data as Float32Array;
    return { F: Fv[0] + Fv[1], g: out[gradName('act')].data as Float32Array };
  };
  const base = await run(a);
  assert.equal(base.g.length, a.length);
  const h = 1e-2;
  let maxG = 0;
  for (let i = 0; i < a.length; i++) {
    const [fp, fm] = await plusMinus(async (x) => (await run(x)).F, a, i, h);
    const fd = (fp - fm) / (2 * h);
    maxG = Math.max(maxG, Math.abs(fd));
    assert.ok(fdAgrees(base.g[i], fd), `coordinate ${i}: ${base.g[i]} vs ${fd}`);
  }
  assert.ok(maxG > 1e-2, `non-trivial gradient (${maxG})`);
  await s.session.release();
});

test('a sequence-major [T·B, F] flattening is refused in one line', async () => {
  try {
    await createAttributionSession(readOnnxModel(model('tb')), 'act');
    assert.unreachable('refused');
  } catch (e) {
    assert.instance(e, QuantlensError);
    const msg = (e as Error).message;
    assert.match(msg, /LIG: "act" is \[10, 6\] for 2 examples of 5 tokens, but row b·5 \+ t is not example b at position t/);
    assert.match(msg, /only a batch-major \[batch·sequence, width\] flattening is supported/);
    assert.not.match(msg, /\n/);
  }
});

test.run();
