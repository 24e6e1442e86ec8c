/**
 * Straight-through gradients through quantized linear layers, per variant, on a synthetic model
 * (fd-harness layout):  act [B,T,6] ─L1 [6,32]─▸ y1 ─Tanh─▸ h1 ─L2 [32,16]─▸ y2 ─Tanh─▸ ─head─▸ logits
 * with L1, L2 quantized by quantizeModel (the head produces the logits and stays float).
 *
 * Reference: the SAME network in float32 with each Lᵢ's weight replaced by Ŵᵢ, the weight ORT
 * effectively applies, obtained independently of the code under test — the quantized single
 * MatMul run by ORT on the identity matrix (I·Ŵ = Ŵ). The activation-quantizing variants
 * (llm-int8, dynamic-int8) also round x, so their forward values differ from x·Ŵ; the reference
 * adds the constant cᵢ = yᵢ(quantized) − xᵢ·Ŵᵢ taken at the evaluation point, which makes its
 * forward values there equal the quantized model's (so Tanh′ and softmax agree) without changing
 * its derivative. For weight-only variants cᵢ is float summation noise, checked to be tiny.
 * The reference's own backward graph is checked by central differences over every coordinate
 * (fdCheck), and the quantized model's gradient must equal the reference's to 1e-5 relative.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { appendGraphOutputs, GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { floatToHalf, halfToFloat } from '../../../onnx/dtypes.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { quantizeModel, quantSessionConfig, type QuantOptions, type QuantVariant } from '../../../onnx/quantize/index.ts';
// The graphs run every position (lastPosition: false): the test reads the layers' outputs there.
import { buildAttributionGraph, buildAttributionGraphWithInfo, gradName, overrideName, TARGET_INPUT } from '../../../onnx/backward/graph.ts';
import { B, fdCheck, rng, syntheticModel, T, W, type Body } from './fd-harness.ts';
import { gaussian, identity, runY, tmpDir, writeMatMulModel } from '../quantize/fixtures.ts';

const H1 = 32;
const H2 = 16;
const SEED = 21;
/** The constants cᵢ are stored for up to [3, 5] (batch, sequence) and sliced to the run's shape. */
const BMAX = 3;
const TMAX = 5;

interface Offsets {
  c1: Float32Array;
  c2: Float32Array;
}

function network(w1: Float32Array, w2: Float32Array, offsets?: Offsets): Body {
  return (g, x, h) => {
    const offset = (y: string, c: Float32Array, n: number, name: string) => {
      const [slice] = g.node('Slice', [g.constF32(c, [BMAX, TMAX, n]), h.i64([0, 0]), h.bt(), h.i64([0, 1])]);
      return g.node('Add', [y, slice], [name])[0];
    };
    let [y1] = g.node('MatMul', [x, g.constF32(w1, [W, H1])], offsets ? 1 : ['y1']);
    if (offsets) y1 = offset(y1, offsets.c1, H1, 'y1');
    const [h1] = g.node('Tanh', [y1], ['h1']);
    let [y2] = g.node('MatMul', [h1, g.constF32(w2, [H1, H2])], offsets ? 1 : ['y2']);
    if (offsets) y2 = offset(y2, offsets.c2, H2, 'y2');
    return { out: g.node('Tanh', [y2])[0], k: H2 };
  };
}

/** Ŵ as ORT applies it: the quantized single MatMul on the identity matrix. */
async function effectiveWeight(dir: string, w: Float32Array, K: number, N: number, variant: QuantVariant, opts: QuantOptions): Promise<Float32Array> {
  const name = `single_${K}x${N}_${Math.random().toString(36).slice(2)}`;
  const src = writeMatMulModel(dir, K, N, w, { name: `${name}.onnx` });
  const out = path.join(dir, `${name}_q.onnx`);
  await quantizeModel(src, variant, out, { ...opts, includeLmHead: true });
  return runY(out, identity(K), K, K);
}

/** y − x·Ŵ per row (float64), padded to [BMAX, TMAX, N]. */
function offsets(x: Float32Array, y: Float32Array, w: Float32Array, K: number, N: number): Float32Array {
  const c = new Float32Array(BMAX * TMAX * N);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const row = b * T + t;
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[row * K + k] * w[k * N + n];
        c[(b * TMAX + t) * N + n] = y[row * N + n] - s;
      }
    }
  return c;
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

const ids = new ort.Tensor('int64', BigInt64Array.from({ length: B * T }, (_, i) => BigInt(1 + (i % 5))), [B, T]);
const target = new ort.Tensor('int64', BigInt64Array.from([1n, 3n, 4n].slice(0, B)), [B]);

async function gradientAt(bytes: Uint8Array, x0: Float32Array, fetchIntermediates: boolean) {
  const model = fetchIntermediates ? appendGraphOutputs(bytes, [{ name: 'y1' }, { name: 'h1' }, { name: 'y2' }]) : bytes;
  const s = await ort.InferenceSession.create(model, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
  const out = await s.run({ input_ids: ids, [TARGET_INPUT]: target, [overrideName('act')]: new ort.Tensor('float32', x0, [B, T, W]) });
  await s.release();
  const get = (n: string) => out[n]?.data as Float32Array;
  return { g: get(gradName('act')), y1: get('y1'), h1: get('h1'), y2: get('y2') };
}

interface Case {
  label: string;
  variant: QuantVariant;
  opts: QuantOptions;
  unitOp: string;
  /** Activation-quantizing: forward values are not x·Ŵ. */
  roundsActivations?: boolean;
}

const cases: Case[] = [
  { label: 'nf4 (bnb, double quant)', variant: 'nf4', opts: {}, unitOp: 'MatMulBnb4' },
  { label: 'fp4', variant: 'fp4', opts: { blockSize: 32 }, unitOp: 'MatMulBnb4' },
  { label: 'q4 symmetric', variant: 'q4', opts: { blockSize: 16 }, unitOp: 'MatMulNBits' },
  { label: 'q4 asymmetric (zero points)', variant: 'q4', opts: { blockSize: 16, symmetric: false }, unitOp: 'MatMulNBits' },
  { label: 'int8 (MatMulNBits 8 bits)', variant: 'int8', opts: { blockSize: 16 }, unitOp: 'MatMulNBits' },
  { label: 'int8 asymmetric', variant: 'int8', opts: { blockSize: 16, symmetric: false }, unitOp: 'MatMulNBits' },
  { label: 'llm-int8 (outliers in some columns of L1)', variant: 'llm-int8', opts: { outlierThreshold: 3 }, unitOp: 'StraightThrough(llm-int8)', roundsActivations: true },
  { label: 'dynamic-int8', variant: 'dynamic-int8', opts: {}, unitOp: 'StraightThrough(dynamic-int8)', roundsActivations: true },
];

for (const c of cases) {
  test(`${c.label}: gradient == float network with Ŵ (checked by central differences)`, async () => {
    const dir = tmpDir('ql-stgrad-');
    const w1 = gaussian(W * H1, SEED, 0.6);
    const w2 = gaussian(H1 * H2, SEED + 1, 0.3);
    const src = path.join(dir, 'src.onnx');
    writeFileSync(src, syntheticModel(network(w1, w2), SEED));
    const q = path.join(dir, 'q.onnx');
    await quantizeModel(src, c.variant, q, c.opts);

    // The quantized model's gradient and forward values at x0 (columns 0, 1 large: llm-int8 outliers).
    const r = rng(SEED + 5);
    const x0 = Float32Array.from({ length: B * T * W }, (_, i) => (r() * 2 - 1) * (i % W < 2 ? 4 : 1));
    const { bytes, info } = await buildAttributionGraphWithInfo(q, { layerTensors: ['act'], lastPosition: false });
    const ops = info.pathNodes.map((n) => n.opType);
    assert.is(ops.filter((o) => o === c.unitOp).length, 2, `both layers are straight-through units (${ops})`);
    assert.ok(!ops.some((o) => /Integer|Quantize|Round/.test(o)), `no integer/rounding node on the path (${ops})`);
    const Q = await gradientAt(bytes, x0, true);

    // Ŵ from ORT; llm-int8: per input column, the float path (outlier) or the int8 path.
    let w1Hat: Float32Array;
    let w2Hat: Float32Array;
    if (c.variant === 'llm-int8') {
      const threshold = c.opts.outlierThreshold!;
      const perColumn = async (w: Float32Array, K: number, N: number, x: Float32Array) => {
        const viaInt8 = await effectiveWeight(dir, w, K, N, c.variant, { outlierThreshold: 6 });
        const viaFloat = await effectiveWeight(dir, w, K, N, c.variant, { outlierThreshold: 0.5 });
        const outlier = Array.from({ length: K }, (_, k) => Array.from({ length: B * T }, (_, m) => Math.abs(x[m * K + k]) >= threshold).some(Boolean));
        const eff = new Float32Array(K * N);
        for (let k = 0; k < K; k++) eff.set((outlier[k] ? viaFloat : viaInt8).subarray(k * N, (k + 1) * N), k * N);
        return { eff, outliers: outlier.filter(Boolean).length };
      };
      const l1 = await perColumn(w1, W, H1, x0);
      const l2 = await perColumn(w2, H1, H2, Q.h1);
      assert.ok(l1.outliers > 0 && l1.outliers < W, `L1 has outlier and int8 columns (${l1.outliers}/${W})`);
      assert.is(l2.outliers, 0, 'L2 (after Tanh) has no outliers');
      w1Hat = l1.eff;
      w2Hat = l2.eff;
    } else {
      w1Hat = await effectiveWeight(dir, w1, W, H1, c.variant, c.opts);
      w2Hat = await effectiveWeight(dir, w2, H1, H2, c.variant, c.opts);
    }
    const off = { c1: offsets(x0, Q.y1, w1Hat, W, H1), c2: offsets(Q.h1, Q.y2, w2Hat, H1, H2) };
    const cMax = Math.max(maxAbs(off.c1) / maxAbs(Q.y1), maxAbs(off.c2) / maxAbs(Q.y2));
    if (c.roundsActivations) assert.ok(cMax > 1e-4, `activation rounding shows in the forward values (${cMax})`);
    else assert.ok(cMax < 1e-5, `weight-only: the forward is x·Ŵ (relative offset ${cMax})`);

    // The reference float network, its gradient at x0, and its gradient against central differences.
    const reference = network(w1Hat, w2Hat, off);
    const R = await gradientAt(await buildAttributionGraph(readOnnxModel(syntheticModel(reference, SEED)), { layerTensors: ['act'], lastPosition: false }), x0, true);
    assert.ok(maxAbs(R.y1.map((v, i) => v - Q.y1[i])) <= 1e-5 * maxAbs(Q.y1), 'reference forward == quantized forward at x0');
    const scale = maxAbs(R.g);
    const err = maxAbs(Q.g.map((v, i) => v - R.g[i]));
    console.log(`  ${c.label}: max|g| ${scale.toExponential(3)}, max|gQ − gRef| ${err.toExponential(2)} (rel ${(err / scale).toExponential(2)}), forward offset rel ${cMax.toExponential(2)}`);
    assert.ok(scale > 1e-2, 'non-trivial gradient');
    assert.ok(err <= 1e-5 * scale, `quantized gradient vs reference: rel ${err / scale}`);
    const fd = await fdCheck(reference, { seed: SEED });
    assert.equal(fd.failures.slice(0, 5), [], `reference vs central differences: ${fd.failures.length}/${fd.coordinates} off`);
    // Sanity: Ŵ is a quantization of W (not e.g. zeros), so the gradient is the quantized network's.
    assert.ok(maxAbs(w1Hat.map((v, i) => v - w1[i])) < 0.3 * maxAbs(w1));
  });
}

/**
 * fp16 models: the quantizer runs each quantized layer in float32 between two Casts. The same
 * network built in float16 and in float32 (weights and inputs exactly representable in fp16, so
 * both quantize to the same codes) must give the same gradient up to fp16 rounding of the
 * activations (|Δ| ≤ 2e-2·max|g|; a missing Cast gradient or a wrong unit input would be O(1)).
 */
function plainModel(type: 'float' | 'float16', w: { a: Float32Array; b: Float32Array; w1: Float32Array; w2: Float32Array; head: Float32Array }): Uint8Array {
  const g = new GraphBuilder('fp16_check');
  const c = (v: Float32Array, dims: number[]) => g.initializer(g.fresh('w'), type === 'float' ? tensor('float', dims, v) : tensor('float16', dims, floatToHalf(v)));
  g.input('input_ids', 'int64', ['batch', 'seq']);
  const [xf] = g.node('Cast', ['input_ids'], 1, { to: type === 'float' ? 1 : 10 });
  const [xu] = g.node('Unsqueeze', [xf, g.constI64([-1])]);
  g.node('Add', [g.node('Mul', [xu, c(w.a, [W])])[0], c(w.b, [W])], ['act']);
  const [h1] = g.node('Tanh', [g.node('MatMul', ['act', c(w.w1, [W, H1])])[0]]);
  const [h2] = g.node('Tanh', [g.node('MatMul', [h1, c(w.w2, [H1, H2])])[0]]);
  g.node('MatMul', [h2, c(w.head, [H2, 5])], ['logits']);
  g.output('logits', type, ['batch', 'seq', 5]);
  return g.toModel({ opset: 17 });
}

const toHalfExact = (v: Float32Array) => halfToFloat(floatToHalf(v));

for (const variant of ['nf4', 'q4', 'llm-int8'] as const) {
  test(`fp16 model, ${variant}: Casts around the units carry the gradient (fp16 == fp32 model within fp16 rounding)`, async () => {
    const dir = tmpDir('ql-stgrad16-');
    const w = {
      a: toHalfExact(gaussian(W, 1, 0.5)),
      b: toHalfExact(gaussian(W, 2, 0.5)),
      w1: toHalfExact(gaussian(W * H1, 3, 0.6)),
      w2: toHalfExact(gaussian(H1 * H2, 4, 0.3)),
      head: toHalfExact(gaussian(H2 * 5, 5, 1)),
    };
    const x0 = toHalfExact(Float32Array.from({ length: B * T * W }, (_, i) => Math.sin(i * 1.7)));
    const grads: Float32Array[] = [];
    for (const type of ['float', 'float16'] as const) {
      const src = path.join(dir, `${type}.onnx`);
      writeFileSync(src, plainModel(type, w));
      const q = path.join(dir, `${type}_q.onnx`);
      await quantizeModel(src, variant, q, variant === 'q4' ? { blockSize: 16 } : {});
      const { bytes, info } = await buildAttributionGraphWithInfo(q, { layerTensors: ['act'], lastPosition: false });
      const ops = info.pathNodes.map((n) => n.opType);
      if (type === 'float16') assert.ok(ops.filter((o) => o === 'Cast').length >= 4, `Casts on the path (${ops})`);
      const s = await ort.InferenceSession.create(bytes, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
      const ov = type === 'float' ? new ort.Tensor('float32', x0, [B, T, W]) : new ort.Tensor('float16', floatToHalf(x0), [B, T, W]);
      const out = await s.run({ input_ids: ids, [TARGET_INPUT]: target, [overrideName('act')]: ov });
      await s.release();
      const g = out[gradName('act')];
      assert.is(g.type, type === 'float' ? 'float32' : 'float16');
      grads.push(type === 'float' ? (g.data as Float32Array) : halfToFloat(g.data as Uint16Array));
    }
    const scale = maxAbs(grads[0]);
    const err = maxAbs(grads[0].map((v, i) => v - grads[1][i]));
    console.log(`  fp16 ${variant}: max|g| ${scale.toExponential(3)}, max|g16 − g32| ${err.toExponential(2)}`);
    assert.ok(scale > 1e-2);
    assert.ok(err <= 2e-2 * scale, `rel ${err / scale}`);
  });
}

test.run();
