/**
 * The last-position tail (last-position.ts): the graph that runs the final norm and LM head (and
 * whatever else is position-wise before the logits) at the last position only gives the same
 * objective and gradient as the graph that runs them everywhere, and its gradient passes central
 * differences; a node that mixes positions ends the tail.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { buildFeeds } from '../../../onnx/feeds.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { buildAttributionGraphWithInfo, gradName, OBJECTIVE_OUTPUT, originalName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { coordinatesOff, fdCheck, rng } from './fd-harness.ts';

const layerTensor = (i: number) => `/model/layers.${i}/mlp/act_fn/Mul_output_0`;
const plan = { idsName: 'input_ids', idsType: 'int64' as const, maskName: 'attention_mask', maskType: 'int64' as const, pastInputs: [] };

async function storiesFeeds(dir: string) {
  const tok = await loadTokenizer(dir);
  const ids = ['is the sky blue on a clear day', 'do cats bark'].map((q) => tok.encode(`Respond with True or False only.\n${q}\nAnswer:`));
  const lengths = Int32Array.from(ids.map((x) => x.length));
  const S = Math.max(...lengths);
  return { S, feeds: buildFeeds(plan, { seqLen: S, lengths, ids }, 0) };
}

async function graphOf(model: string, T: string, lastPosition: boolean) {
  const { bytes, info } = await buildAttributionGraphWithInfo(readOnnxModel(model), { layerTensors: [T], lastPosition });
  return { session: await ort.InferenceSession.create(bytes), info };
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

for (const layer of [0, 4]) {
  test(`stories260K layer ${layer}: last-position tail gives the full graph's objective and gradient; gradient == central differences`, async () => {
    const dir = sharedPath('models/stories260K-onnx', 'last-position tail');
    if (!dir) return;
    const model = path.join(dir, 'model.onnx');
    const T = layerTensor(layer);
    const tail = await graphOf(model, T, true);
    const full = await graphOf(model, T, false);
    assert.ok(tail.info.tailNodes > 0, 'the final norm and LM head form a tail');
    assert.is(full.info.tailNodes, 0);
    const { feeds, S } = await storiesFeeds(dir);
    const orig = (await full.session.run({ ...feeds, [overrideName(T)]: new ort.Tensor('float32', new Float32Array(2 * S * 172), [2, S, 172]), [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from([0n, 0n]), [2]) }, [originalName(T)]))[originalName(T)];
    const r = rng(3);
    const a = (orig.data as Float32Array).map((x) => x + 0.1 * (r() - 0.5));
    const run = async (g: { session: ort.InferenceSession }, x: Float32Array) =>
      g.session.run({ ...feeds, [overrideName(T)]: new ort.Tensor('float32', x, orig.dims as number[]), [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from([7n, 19n]), [2]) }, [OBJECTIVE_OUTPUT, gradName(T), 'logits']);
    const [yt, yf] = [await run(tail, a), await run(full, a)];
    const lt = yt.logits.data as Float32Array;
    const lf = yf.logits.data as Float32Array;
    const V = lt.length / 2;
    assert.equal(yt.logits.dims, [2, 1, V]);
    for (let b = 0; b < 2; b++) for (let v = 0; v < V; v++) assert.ok(Math.abs(lt[b * V + v] - lf[(b * S + S - 1) * V + v]) <= 1e-5 * maxAbs(lf), `logits row ${b}, ${v}`);
    const [ot, of] = [yt[OBJECTIVE_OUTPUT].data as Float32Array, yf[OBJECTIVE_OUTPUT].data as Float32Array];
    for (let b = 0; b < 2; b++) assert.ok(Math.abs(ot[b] - of[b]) <= 1e-5 * Math.abs(of[b]) + 1e-6, `objective ${ot[b]} vs ${of[b]}`);
    const [gt, gf] = [yt[gradName(T)].data as Float32Array, yf[gradName(T)].data as Float32Array];
    const scale = maxAbs(gf);
    let err = 0;
    for (let i = 0; i < gf.length; i++) err = Math.max(err, Math.abs(gt[i] - gf[i]));
    assert.ok(err <= 1e-5 * scale, `gradient max |Δ| ${err} vs scale ${scale}`);
    // Central differences of the tail graph's own objective, on 40 coordinates of the last position and before it.
    const F = async (x: Float32Array) => Array.from((await run(tail, x))[OBJECTIVE_OUTPUT].data as Float32Array).reduce((s, v) => s + v, 0);
    const coords = Array.from({ length: 40 }, (_, k) => Math.floor(r() * a.length));
    const off = await coordinatesOff(F, a, gt, coords);
    assert.equal(off, [], off.join('; '));
  });
}

for (const variant of ['nf4', 'llm-int8'] as const) {
  test(`stories260K ${variant}, layer 2: the tail gives the full graph's objective and gradient`, async () => {
    const dir = sharedPath('models/stories260K-onnx', 'last-position tail, quantized');
    if (!dir) return;
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'quantlens-tail-'));
    try {
      const q = path.join(tmp, 'model.onnx');
      await quantizeModel(path.join(dir, 'model.onnx'), variant, q);
      const T = layerTensor(2);
      const tail = await graphOf(q, T, true);
      const full = await graphOf(q, T, false);
      // nf4: final norm, head and the last layer's MLP and o_proj (MatMulBnb4, 24 nodes as in fp32);
      // llm-int8: final norm and head (9), stopping at the last unit's output (units stay whole).
      assert.is(tail.info.tailNodes, variant === 'nf4' ? 24 : 9);
      const { feeds, S } = await storiesFeeds(dir);
      const r = rng(5);
      const a = Float32Array.from({ length: 2 * S * 172 }, () => r() - 0.5);
      const run = async (g: { session: ort.InferenceSession }) =>
        g.session.run({ ...feeds, [overrideName(T)]: new ort.Tensor('float32', a, [2, S, 172]), [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.from([3n, 11n]), [2]) }, [OBJECTIVE_OUTPUT, gradName(T)]);
      const [yt, yf] = [await run(tail), await run(full)];
      const [ot, of] = [yt[OBJECTIVE_OUTPUT].data as Float32Array, yf[OBJECTIVE_OUTPUT].data as Float32Array];
      for (let b = 0; b < 2; b++) assert.ok(Math.abs(ot[b] - of[b]) <= 1e-5 * Math.abs(of[b]) + 1e-6, `objective ${ot[b]} vs ${of[b]}`);
      const [gt, gf] = [yt[gradName(T)].data as Float32Array, yf[gradName(T)].data as Float32Array];
      let err = 0;
      for (let i = 0; i < gf.length; i++) err = Math.max(err, Math.abs(gt[i] - gf[i]));
      assert.ok(err <= 1e-5 * maxAbs(gf), `gradient max |Δ| ${err} vs scale ${maxAbs(gf)}`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('the tail stops at a node that mixes positions (Softmax over the sequence before the head): gradient == central differences', async () => {
  // Only the head MatMul is position-wise; the Softmax runs over every position, then is sliced.
  const report = await fdCheck((g, act, h) => ({ out: g.node('Softmax', [g.node('MatMul', [act, h.rand([6, 4])])[0]], 1, { axis: 1 })[0], k: 4 }));
  assert.equal(report.failures, [], report.failures.join('; '));
});

test.run();
