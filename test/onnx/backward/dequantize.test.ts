/**
 * Ŵ recomputed in JS (dequantize.ts, reached through the units quantized-patterns.ts finds) against
 * the weight ONNX Runtime really applies: the quantized single-MatMul model run on the identity
 * matrix returns I·Ŵ = Ŵ. Weight-only formats must agree bit for bit; the int8 activation paths
 * agree up to the float rounding of their scale products (relative 1e-6).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { quantizeModel, type QuantOptions, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { findQuantizedUnits } from '../../../onnx/backward/quantized-patterns.ts';
import { gaussian, identity, runY, tmpDir, writeMatMulModel } from '../quantize/fixtures.ts';

const K = 40;
const N = 24;

async function quantized(variant: QuantVariant, opts: QuantOptions, w: Float32Array) {
  const dir = tmpDir('ql-dequant-');
  const src = writeMatMulModel(dir, K, N, w);
  const out = path.join(dir, 'q.onnx');
  await quantizeModel(src, variant, out, { ...opts, includeLmHead: true });
  const m = readOnnxModel(out);
  const units = findQuantizedUnits(m);
  const js = units[0]?.weight();
  m.source.close();
  return { out, units, js, ort: await runY(out, identity(K), K, K) };
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    err = Math.max(err, Math.abs(a[i] - b[i]));
  }
  return err / scale;
}

const weightOnly: { variant: QuantVariant; opts: QuantOptions; kind: string }[] = [
  { variant: 'nf4', opts: {}, kind: 'MatMulBnb4' },
  { variant: 'nf4', opts: { blockSize: 16, doubleQuant: false }, kind: 'MatMulBnb4' },
  { variant: 'fp4', opts: { blockSize: 32 }, kind: 'MatMulBnb4' },
  { variant: 'q4', opts: { blockSize: 16 }, kind: 'MatMulNBits' },
  { variant: 'q4', opts: { blockSize: 16, symmetric: false }, kind: 'MatMulNBits' },
  { variant: 'int8', opts: { blockSize: 32 }, kind: 'MatMulNBits' },
  { variant: 'int8', opts: { blockSize: 16, symmetric: false }, kind: 'MatMulNBits' },
];

for (const c of weightOnly) {
  test(`${c.variant} ${JSON.stringify(c.opts)}: JS Ŵ == ORT's weight (identity input), bit for bit`, async () => {
    const w = gaussian(K * N, 11, 0.2);
    for (let i = 0; i < N; i++) w[i] += 0.1; // skewed so zero points matter
    const r = await quantized(c.variant, c.opts, w);
    assert.is(r.units.length, 1);
    assert.is(r.units[0].kind, c.kind);
    assert.equal([r.units[0].K, r.units[0].N], [K, N]);
    assert.equal(Array.from(r.js!), Array.from(r.ort));
    assert.ok(maxRel(r.js!, w) < 0.2, 'Ŵ is a quantization of W');
  });
}

test('llm-int8: JS Ŵ == the outlier-path weight; the int8 path is Ŵ·int8Factor (bnb constant 6.200124e-5)', async () => {
  const w = gaussian(K * N, 12, 0.2);
  // Threshold 0.5: the identity's ones are outliers, every column takes the float path.
  const allOut = await quantized('llm-int8', { outlierThreshold: 0.5 }, w);
  const u = allOut.units[0];
  assert.is(allOut.units.length, 1);
  assert.is(u.kind, 'llm-int8');
  assert.equal(Array.from(allOut.js!), Array.from(allOut.ort));
  // Threshold 6: no outliers, pure int8 path.
  const noOut = await quantized('llm-int8', { outlierThreshold: 6 }, w);
  const f = noOut.units[0].outliers!.int8Factor;
  assert.ok(Math.abs(f - 127 * 127 * 6.200124e-5) < 1e-6, `factor ${f}`);
  const scaled = noOut.js!.map((v) => v * f);
  assert.ok(maxRel(scaled, noOut.ort) < 1e-6, `int8 path ${maxRel(scaled, noOut.ort)}`);
  assert.ok(maxRel(noOut.js!, noOut.ort) > 1e-5, 'the factor is needed (the two paths differ by 1.8e-5)');
});

test('dynamic-int8: JS Ŵ == ORT weight up to the scale product rounding', async () => {
  const w = gaussian(K * N, 13, 0.2);
  const r = await quantized('dynamic-int8', {}, w);
  assert.is(r.units.length, 1);
  assert.is(r.units[0].kind, 'dynamic-int8');
  assert.is(r.units[0].members.length, 4);
  assert.is(r.units[0].shared[0].opType, 'DynamicQuantizeLinear');
  assert.ok(maxRel(r.js!, r.ort) < 1e-6, `${maxRel(r.js!, r.ort)}`);
  assert.ok(maxRel(r.js!, w) < 0.02);
});

test.run();
