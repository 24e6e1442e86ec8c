/**
 * Attribution graphs on real exports that use contrib ops, with hand-made feeds (their inputs are
 * not yet classified by onnx/feeds.ts on this branch):
 *  - genai-llama-fp32 and -int4 (onnxruntime-genai builder: GroupQueryAttention with rotary, GQA
 *    heads, SkipSimplifiedLayerNormalization; int4 MatMulNBits weights), right-padded as its
 *    GroupQueryAttention expects;
 *  - tiny-random-gpt2-fp32 (onnxruntime.transformers: opset 11, com.microsoft Attention,
 *    FastGelu, SkipLayerNormalization), left-padded with its 2-D attention mask.
 * Each: gradient at an MLP activation == central differences on a padded batch of two, the
 * `__original` output == the plain model's activation, LIG completeness on single examples, and a
 * LIG batch of two lengths == each example alone.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { appendGraphOutputs } from '../../../onnx/builder.ts';
import { createSession, defaultSessionSettings } from '../../../onnx/session.ts';
import { buildAttributionGraphWithInfo, gradName, OBJECTIVE_OUTPUT, originalName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import type { FeedBuilder } from '../../../onnx/backward/probe.ts';
import { attributeBatch, attributeExample, createAttributionSession, type LigResult } from '../../../operators/attribution/lig.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { coordinatesOff, rng } from './fd-harness.ts';

const i64 = (v: ArrayLike<number>, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(Array.from(v, BigInt)), dims);
const i32 = (v: ArrayLike<number>, dims: number[]) => new ort.Tensor('int32', Int32Array.from(v), dims);

/** genai: real tokens first (right padding), empty past [B, kv_heads 2, 0, head 16]. */
const genaiFeeds: FeedBuilder = (batch, padId) => {
  const B = batch.ids.length;
  const S = batch.seqLen;
  const ids = new Array<number>(B * S).fill(padId);
  const mask = new Array<number>(B * S).fill(0);
  batch.ids.forEach((row, b) => row.forEach((t, j) => ((ids[b * S + j] = t), (mask[b * S + j] = 1))));
  const feeds: Record<string, ort.Tensor> = { input_ids: i64(ids, [B, S]), attention_mask: i64(mask, [B, S]) };
  for (let l = 0; l < 4; l++) for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [B, 2, 0, 16]);
  return feeds;
};

/** gpt2 (onnxruntime.transformers): left padding, int32 ids/positions/mask, empty past [2, B, 4, 0, 8]. */
const gpt2Feeds: FeedBuilder = (batch, padId) => {
  const B = batch.ids.length;
  const S = batch.seqLen;
  const ids = new Array<number>(B * S).fill(padId);
  const mask = new Array<number>(B * S).fill(0);
  const pos = new Array<number>(B * S).fill(0);
  batch.ids.forEach((row, b) => row.forEach((t, j) => {
    const c = b * S + S - row.length + j;
    ids[c] = t;
    mask[c] = 1;
    pos[c] = j;
  }));
  const feeds: Record<string, ort.Tensor> = { input_ids: i32(ids, [B, S]), position_ids: i32(pos, [B, S]), attention_mask: i32(mask, [B, S]) };
  for (let l = 0; l < 5; l++) feeds[`past_${l}`] = new ort.Tensor('float32', new Float32Array(0), [2, B, 4, 0, 8]);
  return feeds;
};

interface RealCase {
  name: string;
  rel: string;
  file: string;
  tensor: string;
  feeds: FeedBuilder;
  ops: string[];
  vocab: number;
  /**
   * The forward is piecewise constant (MatMulNBits accuracy_level 4 rounds activations to int8 in
   * ORT): central differences measure rounding steps, not slopes, so only LIG runs, with its
   * completeness reported and bounded loosely, as for llm-int8.
   */
  piecewise?: boolean;
}

const CASES: RealCase[] = [
  { name: 'genai-llama-fp32 layer 1', rel: 'models/exporters/genai-llama-fp32', file: 'model.onnx', tensor: '/model/layers.1/mlp/act_fn/Mul/output_0', feeds: genaiFeeds, ops: ['GroupQueryAttention'], vocab: 512 },
  { name: 'genai-llama-int4 layer 2 (MatMulNBits straight-through)', rel: 'models/exporters/genai-llama-int4', file: 'model.onnx', tensor: '/model/layers.2/mlp/act_fn/Mul/output_0', feeds: genaiFeeds, ops: ['GroupQueryAttention'], vocab: 512, piecewise: true },
  { name: 'tiny-random-gpt2-fp32 layer 2', rel: 'models/tiny-random-gpt2-fp32', file: 'past.onnx', tensor: 'FullyConnect_MatMul_5_input', feeds: gpt2Feeds, ops: ['Attention', 'FastGelu'], vocab: 1000 },
];

const ROWS = [Int32Array.from([1, 45, 301, 77, 9, 260, 13]), Int32Array.from([1, 88, 402, 5])];

for (const c of CASES) {
  if (!c.piecewise) test(`${c.name}: gradient == central differences on a padded batch; __original == the plain model`, async () => {
    const dir = sharedPath(c.rel, `${c.name} attribution graph`);
    if (!dir) return;
    const file = path.join(dir, c.file);
    const { bytes, info } = await buildAttributionGraphWithInfo(file, { layerTensors: [c.tensor], feeds: c.feeds });
    for (const op of c.ops) assert.ok(info.decomposed.some((n) => n.opType === op), `${op} decomposed (${info.decomposed.map((n) => n.opType)})`);
    const s = await createSession(bytes, defaultSessionSettings(), { externalDataDir: dir, where: c.name });
    const S = Math.max(...ROWS.map((x) => x.length));
    const feeds = c.feeds({ seqLen: S, lengths: Int32Array.from(ROWS.map((x) => x.length)), ids: ROWS }, 0);
    const W = info.tensorMeta.shape[2];
    const target = i64([7, 300], [2]);
    const zeros = new ort.Tensor('float32', new Float32Array(2 * S * W), [2, S, W]);
    const a = (await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(c.tensor)]: zeros }))[originalName(c.tensor)].data as Float32Array;
    const plain = await createSession(appendGraphOutputs(new Uint8Array(readFileSync(file)), [{ name: c.tensor }]), defaultSessionSettings(), { externalDataDir: dir, where: c.name });
    const ref = (await plain.run(feeds))[c.tensor].data as Float32Array;
    assert.equal(Array.from(a), Array.from(ref), '__original equals the plain model activation');
    const run = async (x: Float32Array) => {
      const out = await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(c.tensor)]: new ort.Tensor('float32', x, [2, S, W]) });
      const F = out[OBJECTIVE_OUTPUT].data as Float32Array;
      return { F: F[0] + F[1], g: out[gradName(c.tensor)].data as Float32Array };
    };
    const base = await run(a.slice());
    // The 12 largest |grad| plus 30 random coordinates; tolerance as in fd-harness.ts.
    const order = Array.from(base.g.keys()).sort((p, q) => Math.abs(base.g[q]) - Math.abs(base.g[p]));
    const coords = new Set(order.slice(0, 12));
    const r = rng(21);
    while (coords.size < 42) coords.add(Math.floor(r() * base.g.length));
    const bad = await coordinatesOff(async (x) => (await run(x)).F, a, base.g, coords);
    assert.ok(Math.abs(base.g[order[0]]) > 1e-3, `non-trivial gradient (${base.g[order[0]]})`);
    assert.equal(bad, [], `${bad.length}/${coords.size} coordinates off`);
    await s.release();
    await plain.release();
  });

  test(`${c.name}: LIG completeness (adaptive steps) on single examples`, async () => {
    const dir = sharedPath(c.rel, `${c.name} LIG`);
    if (!dir) return;
    const s = await createAttributionSession(path.join(dir, c.file), c.tensor, { feeds: c.feeds, externalDataDir: dir });
    const errors: number[] = [];
    const singles: LigResult[] = [];
    for (const ids of ROWS) {
      const res = await attributeExample(s, { ids }, c.tensor, { steps: 32, adaptiveSteps: true, onWarning: () => {} });
      assert.ok(Number.isFinite(res.F_input) && Number.isFinite(res.F_baseline), 'finite objective');
      assert.ok(res.attributions.every(Number.isFinite), 'finite attributions');
      errors.push(res.completenessError);
      singles.push(await attributeExample(s, { ids }, c.tensor, { steps: 16, onWarning: () => {} }));
    }
    // A batch of both rows (padded, or split by length where the attention needs it) == each alone.
    assert.is(s.unpadded, c.ops.includes('GroupQueryAttention'), 'rows unpadded exactly for GroupQueryAttention models');
    const batch = await attributeBatch(s, ROWS.map((ids) => ({ ids })), c.tensor, { steps: 16, onWarning: () => {} });
    batch.forEach((b, i) => {
      const a = singles[i].attributions;
      const scale = Math.max(...Array.from(a, Math.abs));
      const diff = Math.max(...Array.from(a, (v, j) => Math.abs(v - b.attributions[j])));
      assert.is(b.target, singles[i].target);
      assert.ok(diff <= 1e-4 * scale, `row ${i}: batch vs alone differ by ${diff} (scale ${scale})`);
    });
    console.log(`  ${c.name}: LIG completeness errors ${errors.map((x) => x.toExponential(2)).join(', ')}`);
    const bound = c.piecewise ? 0.05 : 0.01;
    for (const e of errors) assert.ok(e < bound, `completeness error ${e} < ${bound}`);
    await s.session.release();
  });
}

test.run();
