/**
 * The attribution graph on the real stories260K model: gradients at layers 0, 2, 4 (act_fn Mul
 * outputs) against central differences on a left-padded batch of two BoolQ prompts; the
 * `__original` output and the objective against the plain model; refusals before any run.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { appendGraphOutputs } from '../../../onnx/builder.ts';
import { buildFeeds } from '../../../onnx/feeds.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { buildAttributionGraph, gradName, OBJECTIVE_OUTPUT, originalName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { coordinatesOff, rng, syntheticModel } from './fd-harness.ts';

const TEMPLATE = (q: string) => `Respond with True or False only.\n${q}\nAnswer:`;
const layerTensor = (i: number) => `/model/layers.${i}/mlp/act_fn/Mul_output_0`;
const plan = { idsName: 'input_ids', idsType: 'int64' as const, maskName: 'attention_mask', maskType: 'int64' as const, pastInputs: [] };

async function storiesBatch(dir: string) {
  const tok = await loadTokenizer(dir);
  const ids = ['is the sky blue on a clear day', 'do cats bark'].map((q) => tok.encode(TEMPLATE(q)));
  const lengths = Int32Array.from(ids.map((x) => x.length));
  const S = Math.max(...lengths);
  return { ids, lengths, S, feeds: buildFeeds(plan, { seqLen: S, lengths, ids }, 0) };
}

for (const layer of [0, 2, 4]) {
  test(`stories260K layer ${layer}: backward gradient == central differences (left-padded batch of 2)`, async () => {
    const dir = sharedPath('models/stories260K-onnx', 'stories260K gradient check');
    if (!dir) return;
    const T = layerTensor(layer);
    const bytes = await buildAttributionGraph(path.join(dir, 'model.onnx'), { layerTensors: [T] });
    const s = await ort.InferenceSession.create(bytes);
    const { feeds, lengths, S } = await storiesBatch(dir);
    const W = 172;
    const target = new ort.Tensor('int64', BigInt64Array.from([410n, 37n]), [2]);
    const zero = new ort.Tensor('float32', new Float32Array(2 * S * W), [2, S, W]);
    const a = (await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: zero }))[originalName(T)].data as Float32Array;
    const run = async (x: Float32Array) => {
      const out = await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: new ort.Tensor('float32', x, [2, S, W]) });
      const F = out[OBJECTIVE_OUTPUT].data as Float32Array;
      return { F: F[0] + F[1], g: out[gradName(T)]?.data as Float32Array };
    };
    const base = await run(a.slice());
    // Coordinates: the 12 largest |grad| (well conditioned) plus 20 random real-token coordinates of each row.
    const order = Array.from(base.g.keys()).sort((p, q) => Math.abs(base.g[q]) - Math.abs(base.g[p]));
    const coords = new Set(order.slice(0, 12));
    const r = rng(layer + 11);
    for (let b = 0; b < 2; b++) {
      const first = S - lengths[b];
      for (let k = 0; k < 20; k++) coords.add((b * S + first + Math.floor(r() * lengths[b])) * W + Math.floor(r() * W));
    }
    // Tolerance as in fd-harness.ts: h = 1e-2, |F| ≲ 30 → rounding ≈ 6e-8·30/1e-2 ≈ 2e-4, truncation ≲ 1e-4.
    const bad = await coordinatesOff(async (x) => (await run(x)).F, a, base.g, coords);
    assert.ok(Math.abs(base.g[order[0]]) > 1e-2, 'non-trivial gradient');
    assert.equal(bad, [], `${bad.length}/${coords.size} coordinates off`);
    // Pad positions carry no gradient (no real token attends to them).
    for (let b = 0; b < 2; b++) for (let j = 0; j < (S - lengths[b]) * W; j++) assert.is(base.g[b * S * W + j], 0);
    await s.release();
  });
}

test('stories260K: __original equals the plain model activation, objective equals log-softmax of the logits', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'stories260K original/objective check');
  if (!dir) return;
  const T = layerTensor(2);
  const file = path.join(dir, 'model.onnx');
  const plain = await ort.InferenceSession.create(appendGraphOutputs(new Uint8Array(readFileSync(file)), [{ name: T }]));
  const { feeds, S } = await storiesBatch(dir);
  const ref = await plain.run(feeds);
  const s = await ort.InferenceSession.create(await buildAttributionGraph(file, { layerTensors: [T] }));
  const aRef = ref[T].data as Float32Array;
  const target = [410, 37];
  const out = await s.run({ ...feeds, [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from(target.map(BigInt)), [2]), [overrideName(T)]: new ort.Tensor('float32', aRef.slice(), [2, S, 172]) });
  const orig = out[originalName(T)].data as Float32Array;
  assert.equal(Array.from(orig), Array.from(aRef));
  const logits = ref.logits.data as Float32Array;
  const V = 512;
  for (let b = 0; b < 2; b++) {
    const row = logits.subarray((b * S + S - 1) * V, (b * S + S) * V);
    let mx = -Infinity;
    for (const v of row) mx = Math.max(mx, v);
    let z = 0;
    for (const v of row) z += Math.exp(v - mx);
    const lp = row[target[b]] - mx - Math.log(z);
    assert.ok(Math.abs((out[OBJECTIVE_OUTPUT].data as Float32Array)[b] - lp) < 1e-4, `row ${b}: ${(out[OBJECTIVE_OUTPUT].data as Float32Array)[b]} vs ${lp}`);
  }
});

test('an op without a gradient rule on the path is refused before any run', async () => {
  const bytes = syntheticModel((g, x) => ({ out: g.node('Floor', [x], 1, {}, { name: 'my_floor' })[0], k: 6 }));
  try {
    await buildAttributionGraph(readOnnxModel(bytes), { layerTensors: ['act'] });
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, 'GRADIENT');
    assert.match((e as Error).message, 'no gradient rule for Floor (node my_floor)');
  }
});

test('ops off the path need no rule; bad requests are refused', async () => {
  // Floor on a branch that does not reach the logits is pruned.
  const bytes = syntheticModel((g, x) => {
    g.node('Floor', [x], ['unused_floor']);
    return { out: g.node('Tanh', [x])[0], k: 6 };
  });
  const m = readOnnxModel(bytes);
  assert.ok((await buildAttributionGraph(m, { layerTensors: ['act'] })).length > bytes.length);
  for (const [tensors, code] of [[['act', 'act'], 'UNSUPPORTED'], [['nope'], 'MODEL']] as const) {
    try {
      await buildAttributionGraph(m, { layerTensors: [...tensors] });
      assert.unreachable('should throw');
    } catch (e) {
      assert.is((e as QuantlensError).code, code);
    }
  }
});

test.run();
