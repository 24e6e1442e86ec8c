/**
 * transformers.js fp16 export (tjs-llama/onnx/model_fp16.onnx): it loads in ONNX Runtime only
 * after basic graph rewrites (its value_info declares float casts as float16), so the probe falls
 * back to them. Its attribution gradient at layer 1 agrees with the fp32 export's (same weights)
 * to fp16 accuracy.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import path from 'node:path';
import { buildFeeds, planInputs } from '../../../onnx/feeds.ts';
import { buildAttributionGraph, gradName, originalName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { sharedPath } from '../../helpers/shared.ts';

const T = '/model/layers.1/mlp/act_fn/Mul_output_0';
const ROWS = [Int32Array.from([1, 45, 301, 77, 9]), Int32Array.from([1, 88, 402])];

async function gradient(file: string): Promise<{ g: Float32Array; type: string }> {
  const s = await ort.InferenceSession.create(await buildAttributionGraph(file, { layerTensors: [T] }));
  const all = s.inputMetadata as readonly { name: string; type?: string; shape?: readonly (number | string)[] }[];
  const ours = new Set([overrideName(T), TARGET_INPUT]);
  const plan = planInputs({ inputMetadata: all.filter((x) => !ours.has(x.name)) } as unknown as Pick<ort.InferenceSession, 'inputMetadata'>);
  const feeds = buildFeeds(plan, { seqLen: 5, lengths: Int32Array.from([5, 3]), ids: ROWS }, 0);
  const meta = all.find((x) => x.name === overrideName(T))!;
  const W = 172; // intermediate_size
  const zeros = meta.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(2 * 5 * W), [2, 5, W]) : new ort.Tensor('float32', new Float32Array(2 * 5 * W), [2, 5, W]);
  const target = new ort.Tensor('int64', BigInt64Array.from([7n, 300n]), [2]);
  const a = (await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: zeros }))[originalName(T)];
  const out = await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: a });
  const g = out[gradName(T)];
  await s.release();
  const data = g.type === 'float16' ? Float32Array.from(g.data as Uint16Array, halfToFloat) : (g.data as Float32Array);
  return { g: data, type: g.type };
}

function halfToFloat(h: number): number {
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  const v = e === 0 ? f * 2 ** -24 : e === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

test('tjs-llama fp16: attribution gradient at layer 1 ≈ the fp32 export’s (relative L2 < 5e-2)', async () => {
  const dir = sharedPath('models/exporters/tjs-llama/onnx', 'tjs-llama fp16 attribution');
  if (!dir) return;
  const half = await gradient(path.join(dir, 'model_fp16.onnx'));
  const full = await gradient(path.join(dir, 'model.onnx'));
  assert.is(half.type, 'float16');
  assert.is(half.g.length, full.g.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < full.g.length; i++) {
    num += (half.g[i] - full.g[i]) ** 2;
    den += full.g[i] ** 2;
  }
  assert.ok(den > 0, 'non-zero gradient');
  const rel = Math.sqrt(num / den);
  console.log(`  tjs-llama fp16 vs fp32 gradient: relative L2 difference ${rel.toExponential(2)}`);
  assert.ok(rel < 5e-2, `relative L2 difference ${rel}`);
});

test.run();
