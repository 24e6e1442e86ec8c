/**
 * In-graph moments equal a brute-force scan of the same tensor fetched from the same run, over
 * real tokens only (centred on the batch's masked mean, which the graph also outputs), for an opset-17 model (axes as inputs) and an opset-11 model (attributes).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import { augmentForRun } from '../../onnx/augment.ts';
import { momentStatsNames, NEAR_HI, NEAR_LO } from '../../onnx/moment-stats.ts';
import { sharedPath } from '../helpers/shared.ts';

async function check(file: string, opset: number, tensor: string, width: number, intType: 'int64' | 'int32', extra: (B: number, T: number, mask: number[]) => Record<string, ort.Tensor>) {
  const bytes = augmentForRun(readFileSync(file), { captures: [tensor], moments: { tensors: [{ name: tensor, width }], maskName: 'attention_mask', opset } });
  const s = await ort.InferenceSession.create(bytes);
  const B = 3, T = 6;
  const lengths = [6, 2, 4];
  const ids: number[] = [], mask: number[] = [];
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) { const real = t >= T - lengths[b]; mask.push(real ? 1 : 0); ids.push(real ? 5 + ((b * 7 + t * 3) % 200) : 0); }
  const mk = (v: number[]) => (intType === 'int64' ? new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [B, T]) : new ort.Tensor('int32', Int32Array.from(v), [B, T]));
  const n = momentStatsNames(0);
  const out = await s.run({
    input_ids: mk(ids),
    attention_mask: mk(mask),
    ...extra(B, T, mask),
    [NEAR_LO]: new ort.Tensor('float32', Float32Array.of(-0.1), []),
    [NEAR_HI]: new ort.Tensor('float32', Float32Array.of(0.1), []),
  });
  const x = out[tensor].data as Float32Array;
  const shift = out[n.shift].data as Float64Array;
  const real = mask.reduce((a, b) => a + b, 0);
  for (let j = 0; j < width; j++) {
    let mean = 0;
    for (let r = 0; r < B * T; r++) if (mask[r]) mean += x[r * width + j];
    assert.ok(Math.abs(shift[j] - mean / real) < 1e-9 * Math.max(1, Math.abs(mean / real)), `shift[${j}] is the masked batch mean`);
  }
  for (let j = 0; j < width; j++) {
    let s1 = 0, s2 = 0, mn = Infinity, mx = -Infinity, nz = 0;
    for (let r = 0; r < B * T; r++) {
      if (!mask[r]) continue;
      const v = x[r * width + j];
      s1 += v - shift[j]; s2 += (v - shift[j]) ** 2; mn = Math.min(mn, v); mx = Math.max(mx, v);
      if (v > -0.1 && v < 0.1) nz++;
    }
    assert.ok(Math.abs((out[n.s1].data as Float64Array)[j] - s1) < 1e-9 * Math.max(1, Math.abs(s1)), `s1[${j}]`);
    assert.ok(Math.abs((out[n.s2].data as Float64Array)[j] - s2) < 1e-9 * Math.max(1, s2), `s2[${j}]`);
    assert.is((out[n.min].data as Float32Array)[j], mn);
    assert.is((out[n.max].data as Float32Array)[j], mx);
    assert.is((out[n.nearZero].data as Float64Array)[j], nz);
  }
}

test('opset 17 (stories260K): masked in-graph moments equal the fetched tensor scanned in JS', async () => {
  const p = sharedPath('models/stories260K-onnx/model.onnx', 'in-graph moments, opset 17');
  if (!p) return;
  await check(p, 17, '/model/layers.2/mlp/act_fn/Mul_output_0', 172, 'int64', () => ({}));
});

test('opset 11 (tiny-random-gpt2, fused FastGelu): the attribute forms of the reductions', async () => {
  const p = sharedPath('models/tiny-random-gpt2-fp32/past.onnx', 'in-graph moments, opset 11');
  if (!p) return;
  await check(p, 11, 'FullyConnect_MatMul_3_input', 128, 'int32', (B, T, mask) => {
    const pos: number[] = [];
    for (let b = 0; b < B; b++) { let k = 0; for (let t = 0; t < T; t++) pos.push(mask[b * T + t] ? k++ : 0); }
    const extra: Record<string, ort.Tensor> = { position_ids: new ort.Tensor('int32', Int32Array.from(pos), [B, T]) };
    for (let i = 0; i < 5; i++) extra[`past_${i}`] = new ort.Tensor('float32', new Float32Array(0), [2, B, 4, 0, 8]);
    return extra;
  });
});

test.run();
