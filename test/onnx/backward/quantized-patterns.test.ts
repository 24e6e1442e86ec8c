/**
 * Quantized units on the real stories260K model (quantized here into os.tmpdir()):
 *  - nf4 and llm-int8 attribution graphs at layers 0, 2, 4 build, with every quantized layer on
 *    the path collapsed to one straight-through unit (no integer or rounding node left);
 *  - nf4 at layer 2: gradient == central differences of the QUANTIZED model (weight-only
 *    quantization keeps the model a smooth function of the activations);
 *  - llm-int8 at layer 2: no finite-difference check (see the comment there); the exact check of
 *    its rule is rules-quantized.test.ts; here: finite, pad rows zero, aligned with fp32's gradient;
 *  - LIG completeness on 8 BoolQ prompts with nf4 at layers 2 and 4, 50 steps;
 *  - refusals: a tensor inside a unit read elsewhere on the path.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildFeeds } from '../../../onnx/feeds.ts';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { defaultSessionSettings } from '../../../onnx/session.ts';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { quantizeModel, quantSessionConfig, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { buildAttributionGraph, buildAttributionGraphWithInfo, gradName, OBJECTIVE_OUTPUT, originalName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { attributeBatch, createAttributionSession, type LigResult } from '../../../operators/attribution/lig.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { coordinatesOff, rng } from './fd-harness.ts';
import { tempDir } from '../../helpers/temp.ts';

const TEMPLATE = (q: string) => `Respond with True or False only.\n${q}\nAnswer:`;
const layerTensor = (i: number) => `/model/layers.${i}/mlp/act_fn/Mul_output_0`;
const plan = { idsName: 'input_ids', idsType: 'int64' as const, maskName: 'attention_mask', maskType: 'int64' as const, pastInputs: [] };
const W = 172;
const sessionOptions = { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions;

const quantized = new Map<QuantVariant, string>();
let tmp: string | null = null;
async function stories(variant: QuantVariant | 'fp32'): Promise<string | null> {
  const dir = sharedPath('models/stories260K-onnx', `stories260K ${variant} gradients`);
  if (!dir) return null;
  if (variant === 'fp32') return path.join(dir, 'model.onnx');
  let p = quantized.get(variant);
  if (!p) {
    tmp ??= tempDir('ql-stories-q-');
    p = path.join(tmp, `model_${variant}.onnx`);
    await quantizeModel(path.join(dir, 'model.onnx'), variant, p);
    quantized.set(variant, p);
  }
  return p;
}

async function storiesBatch() {
  const dir = sharedPath('models/stories260K-onnx', 'stories260K tokenizer')!;
  const tok = await loadTokenizer(dir);
  const ids = ['is the sky blue on a clear day', 'do cats bark'].map((q) => tok.encode(TEMPLATE(q)));
  const lengths = Int32Array.from(ids.map((x) => x.length));
  const S = Math.max(...lengths);
  return { lengths, S, feeds: buildFeeds(plan, { seqLen: S, lengths, ids }, 0) };
}

/** A session on the attribution graph; run(x) → Σ objective and the gradient at x. */
async function gradientSession(model: string, T: string) {
  const s = await ort.InferenceSession.create(await buildAttributionGraph(model, { layerTensors: [T] }), sessionOptions);
  const { feeds, lengths, S } = await storiesBatch();
  const target = new ort.Tensor('int64', BigInt64Array.from([410n, 37n]), [2]);
  const zero = new ort.Tensor('float32', new Float32Array(2 * S * W), [2, S, W]);
  const original = (await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: zero }))[originalName(T)].data as Float32Array;
  const run = async (x: Float32Array) => {
    const out = await s.run({ ...feeds, [TARGET_INPUT]: target, [overrideName(T)]: new ort.Tensor('float32', x, [2, S, W]) });
    const F = out[OBJECTIVE_OUTPUT].data as Float32Array;
    return { F: F[0] + F[1], g: out[gradName(T)].data as Float32Array };
  };
  return { s, run, original, lengths, S };
}

for (const variant of ['nf4', 'llm-int8'] as const) {
  test(`stories260K ${variant}: attribution graphs at layers 0, 2, 4 collapse every quantized layer on the path`, async () => {
    const q = await stories(variant);
    if (!q) return;
    const m = readOnnxModel(q);
    const unitOp = variant === 'nf4' ? 'MatMulBnb4' : 'StraightThrough(llm-int8)';
    try {
      for (const layer of [0, 2, 4]) {
        const { info } = await buildAttributionGraphWithInfo(m, { layerTensors: [layerTensor(layer)] });
        const ops = info.pathNodes.map((n) => n.opType);
        // On the path: this layer's down_proj, then 7 projections (q, k, v, o, gate, up, down) per later layer.
        assert.is(ops.filter((o) => o === unitOp).length, 1 + 7 * (4 - layer), `layer ${layer}: ${ops.filter((o) => o === unitOp).length} units`);
        assert.ok(!ops.some((o) => /Integer|Quantize|Round|NonZero/.test(o)), `no integer/rounding node on the path`);
      }
    } finally {
      m.source.close();
    }
  });
}

test('stories260K nf4 layer 2: gradient == central differences of the quantized model', async () => {
  const q = await stories('nf4');
  if (!q) return;
  const { s, run, original: a, lengths, S } = await gradientSession(q, layerTensor(2));
  const base = await run(a.slice());
  const order = Array.from(base.g.keys()).sort((p, r) => Math.abs(base.g[r]) - Math.abs(base.g[p]));
  const coords = new Set(order.slice(0, 12));
  const r = rng(29);
  for (let b = 0; b < 2; b++) for (let k = 0; k < 10; k++) coords.add((b * S + S - lengths[b] + Math.floor(r() * lengths[b])) * W + Math.floor(r() * W));
  // Tolerance as in graph.test.ts (h = 1e-2, float32 objective): rounding + truncation ≲ 3e-4.
  const bad = await coordinatesOff(async (x) => (await run(x)).F, a, base.g, coords);
  assert.ok(Math.abs(base.g[order[0]]) > 1e-2, 'non-trivial gradient');
  assert.equal(bad, [], `${bad.length}/${coords.size} coordinates off`);
  await s.release();
});

test('stories260K llm-int8 layer 2: finite gradient, zero on pads, aligned with fp32 gradient at the same activation', async () => {
  const q = await stories('llm-int8');
  const f = await stories('fp32');
  if (!q || !f) return;
  // Why no finite differences here: each token's activations are rounded to 127 levels of its own
  // absmax before every int8 matmul, so the quantized model is piecewise CONSTANT in x at the scale
  // of one level (absmax/127 ≈ 1e-2 of typical activations); a central difference with a small h
  // sees 0 or a jump, never the derivative, and with a large h it measures a smoothed secant, not
  // the straight-through gradient. The rule itself is checked exactly against the float network
  // with Ŵ in rules-quantized.test.ts (outlier and int8 columns both).
  const Q = await gradientSession(q, layerTensor(2));
  const F = await gradientSession(f, layerTensor(2));
  const a = Q.original;
  const gq = (await Q.run(a)).g;
  const gf = (await F.run(a)).g;
  let dot = 0;
  let nq = 0;
  let nf = 0;
  for (let i = 0; i < gq.length; i++) {
    assert.ok(Number.isFinite(gq[i]));
    dot += gq[i] * gf[i];
    nq += gq[i] * gq[i];
    nf += gf[i] * gf[i];
  }
  const cos = dot / Math.sqrt(nq * nf);
  console.log(`  llm-int8 vs fp32 gradient at layer 2: cosine ${cos.toFixed(4)}, |g| ratio ${Math.sqrt(nq / nf).toFixed(4)}`);
  assert.ok(cos > 0.9, `cosine ${cos}`);
  for (let b = 0; b < 2; b++) for (let j = 0; j < (Q.S - Q.lengths[b]) * W; j++) assert.is(gq[b * Q.S * W + j], 0);
  await Q.s.release();
  await F.s.release();
});

/** First n bare questions of boolq.csv (unquoted rows only, as lig.test.ts). */
function boolqQuestions(file: string, n: number): string[] {
  const out: string[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
    if (out.length === n) break;
    if (!line || line.startsWith('"')) continue;
    out.push(line.split(',').slice(0, -2).join(','));
  }
  return out;
}

function distribution(rs: LigResult[]): string {
  const e = rs.map((r) => r.completenessError).sort((x, y) => x - y);
  const qq = (p: number) => e[Math.min(e.length - 1, Math.ceil(p * e.length) - 1)];
  return `min ${e[0].toExponential(2)} median ${qq(0.5).toExponential(2)} p90 ${qq(0.9).toExponential(2)} max ${e[e.length - 1].toExponential(2)}`;
}

test('stories260K nf4: LIG completeness on 8 BoolQ prompts at layers 2 and 4, 50 steps', async () => {
  const q = await stories('nf4');
  const csv = sharedPath('datasets/boolq.csv', 'BoolQ prompts');
  if (!q || !csv) return;
  const tok = await loadTokenizer(sharedPath('models/stories260K-onnx', 'tokenizer')!);
  const examples = boolqQuestions(csv, 8).map((x) => ({ ids: tok.encode(TEMPLATE(x)) }));
  for (const l of [2, 4]) {
    const s = await createAttributionSession(q, layerTensor(l), { settings: { ...defaultSessionSettings(), extra: quantSessionConfig() } });
    const rs = await attributeBatch(s, examples, s.tensor, { steps: 50, onWarning: () => {} });
    console.log(`  nf4 layer ${l}, 50 steps: completeness error ${distribution(rs)}`);
    for (const r of rs) {
      const total = r.attributions.reduce((x, y) => x + y, 0);
      // Smooth in the activations (weight-only quantization): as small as fp32's (lig.test.ts asserts < 1%).
      assert.ok(r.completenessError < 1e-3, `layer ${l}: error ${r.completenessError}`);
      assert.ok(Math.abs(total - (r.F_input - r.F_baseline)) <= 1e-3 * Math.abs(r.F_input - r.F_baseline), `layer ${l}: Σ attr ${total}`);
    }
    await s.session.release();
  }
});

/** ORT quantize_dynamic's node chain with a weight zero point; `extraScaleUse` also adds x_scale to the output. */
function ortDynamicInt8(wzp: number, extraScaleUse: boolean): Uint8Array {
  const g = new GraphBuilder('dq');
  g.input('input_ids', 'int64', ['batch', 'seq']);
  const [xf] = g.node('Cast', ['input_ids'], 1, { to: 1 });
  g.node('Mul', [g.node('Unsqueeze', [xf, g.constI64([-1])])[0], g.constF32([0.1, -0.2, 0.3, 0.4], [4])], ['act']);
  const [aq, as, azp] = g.node('DynamicQuantizeLinear', ['act'], 3);
  g.initializer('wq', tensor('int8', [4, 3], Int8Array.from([1, -2, 3, 4, 5, -6, 7, 8, 9, 10, -11, 12])));
  g.initializer('wzp', tensor('int8', [], Int8Array.of(wzp)));
  const [yi] = g.node('MatMulInteger', [aq, 'wq', azp, 'wzp']);
  const [yf] = g.node('Cast', [yi], 1, { to: 1 });
  const [sc] = g.node('Mul', [as, g.constF32([0.05], [])]);
  if (extraScaleUse) g.node('Add', [g.node('Mul', [yf, sc])[0], as], ['logits']);
  else g.node('Mul', [yf, sc], ['logits']);
  g.output('logits', 'float', ['batch', 'seq', 3]);
  return g.toModel({ opset: 17 });
}

test('ORT-style dynamic int8 with a weight zero point: dx = (onehot − softmax)·Ŵᵀ, Ŵ = (q − zp)·scale (JS)', async () => {
  const m = readOnnxModel(ortDynamicInt8(2, false));
  const s = await ort.InferenceSession.create(await buildAttributionGraph(m, { layerTensors: ['act'] }));
  const x = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.sin(i));
  const ids = new ort.Tensor('int64', BigInt64Array.from({ length: 6 }, () => 1n), [2, 3]);
  const out = await s.run({ input_ids: ids, [TARGET_INPUT]: new ort.Tensor('int64', BigInt64Array.of(0n, 2n), [2]), [overrideName('act')]: new ort.Tensor('float32', x, [2, 3, 4]) });
  const logits = out.logits.data as Float32Array;
  const grad = out[gradName('act')].data as Float32Array;
  const q = [1, -2, 3, 4, 5, -6, 7, 8, 9, 10, -11, 12];
  for (let b = 0; b < 2; b++) {
    const row = logits.subarray((b * 3 + 2) * 3, (b * 3 + 3) * 3);
    const mx = Math.max(...row);
    const z = row.reduce((acc, v) => acc + Math.exp(v - mx), 0);
    const gy = Array.from(row, (v, n) => (n === [0, 2][b] ? 1 : 0) - Math.exp(v - mx) / z);
    for (let t = 0; t < 3; t++)
      for (let k = 0; k < 4; k++) {
        const want = t === 2 ? gy.reduce((acc, gn, n) => acc + gn * (q[k * 3 + n] - 2) * 0.05, 0) : 0;
        assert.ok(Math.abs(grad[(b * 3 + t) * 4 + k] - want) < 1e-6, `b${b} t${t} k${k}: ${grad[(b * 3 + t) * 4 + k]} vs ${want}`);
      }
  }
  await s.release();
});

test('refusal: a tensor inside a quantized unit read elsewhere on the path', async () => {
  const m = readOnnxModel(ortDynamicInt8(0, true));
  try {
    await buildAttributionGraph(m, { layerTensors: ['act'] });
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, 'GRADIENT');
    assert.match((e as Error).message, /inside the quantized DynamicQuantizeLinear unit/);
  }
});

test.run();
