/**
 * Every linear-layer form a real exporter writes is quantized, and quantized exactly as the plain
 * MatMul form is: Gemm (transB 0 and 1, with bias), MatMul(x, Transpose(W)), and the fused qkv weight
 * inside com.microsoft Attention. The plain MatMul's effective weight is checked against the
 * reference dequantization in the per-variant tests; here each form must equal that MatMul
 * (+ bias, or Attention run with the dequantized weight) on random inputs, at opset 11 and 17.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, tensor } from '../../../onnx/builder.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { quantizeModel, quantSessionConfig, type QuantVariant } from '../../../onnx/quantize/index.ts';
import { gaussian, identity, runY, tmpDir, writeMatMulModel } from './fixtures.ts';
import { transposeMatrix as transpose } from '../../../onnx/matrix.ts';
import { floatToHalf, halfToFloat } from '../../../onnx/dtypes.ts';

const K = 64, N = 48, M = 5;
const W = gaussian(K * N, 11, 0.1);
const BIAS = gaussian(N, 12, 0.5);
const X = gaussian(M * K, 13);

type Form = 'gemm' | 'gemm-transB' | 'matmul-transpose' | 'gemm-transpose-transB';

function writeForm(dir: string, form: Form, opset: number): string {
  const g = new GraphBuilder(form);
  g.input('X', 'float', ['m', K]);
  const stored = form === 'gemm-transB' || form === 'matmul-transpose' ? transpose(W, K, N) : W;
  const dims = stored === W ? [K, N] : [N, K];
  g.initializer('W', tensor('float', dims, stored));
  if (form !== 'matmul-transpose') g.initializer('C', tensor('float', [N], BIAS));
  const name = '/model/layers.0/mlp/fc1/Gemm';
  if (form === 'gemm') g.node('Gemm', ['X', 'W', 'C'], ['Y'], {}, { name });
  if (form === 'gemm-transB') g.node('Gemm', ['X', 'W', 'C'], ['Y'], { transB: 1 }, { name });
  if (form === 'gemm-transpose-transB') {
    g.node('Transpose', ['W'], ['Wt'], { perm: { kind: 'ints', v: [1, 0] } });
    g.node('Gemm', ['X', 'Wt', 'C'], ['Y'], { transB: 1 }, { name });
  }
  if (form === 'matmul-transpose') {
    g.node('Transpose', ['W'], ['Wt'], {});
    g.node('MatMul', ['X', 'Wt'], ['Y'], {}, { name: '/model/layers.0/mlp/fc1/MatMul' });
  }
  g.output('Y', 'float', ['m', N]);
  const file = path.join(dir, `${form}-${opset}.onnx`);
  writeFileSync(file, g.toModel({ opset }));
  return file;
}

const VARIANTS: QuantVariant[] = ['nf4', 'q4', 'int8', 'llm-int8', 'dynamic-int8'];

for (const opset of [11, 17]) {
  test(`Gemm (transB 0/1, bias), MatMul(x, Transpose(W)) at opset ${opset}: quantized exactly as the plain MatMul, weight and Transpose dropped`, async () => {
    const dir = tmpDir();
    const plain = writeMatMulModel(dir, K, N, W, { name: 'plain.onnx', opset });
    for (const v of VARIANTS) {
      const plainQ = path.join(dir, `plain-${v}.onnx`);
      await quantizeModel(plain, v, plainQ, { includeLmHead: true });
      const ref = await runY(plainQ, X, M, K);
      for (const form of ['gemm', 'gemm-transB', 'matmul-transpose', 'gemm-transpose-transB'] as Form[]) {
        const src = writeForm(dir, form, opset);
        const out = path.join(dir, `${form}-${opset}-${v}.onnx`);
        const r = await quantizeModel(src, v, out, { includeLmHead: true });
        assert.is(r.quantized.length, 1, `${form} ${v}`);
        assert.is(r.record.fraction_quantized, 1);
        const y = await runY(out, X, M, K);
        const hasBias = form !== 'matmul-transpose';
        let maxDiff = 0;
        for (let i = 0; i < M * N; i++) maxDiff = Math.max(maxDiff, Math.abs(y[i] - (ref[i] + (hasBias ? BIAS[i % N] : 0))));
        assert.ok(maxDiff < 1e-5, `${form} ${v} opset ${opset}: max |Δ| ${maxDiff}`);
        const q = readOnnxModel(out);
        assert.not.ok(q.initializers.has('W'), `${form}: float W dropped`);
        assert.not.ok(q.nodes.some((n) => n.opType === 'Transpose' || n.opType === 'Gemm'), `${form}: Transpose/Gemm gone`);
        q.source.close();
      }
    }
  });
}

test('llm-int8 at opset 11 (no GreaterOrEqual) equals opset 17 bit for bit, with planted outlier columns', async () => {
  const dir = tmpDir();
  const x = X.slice();
  for (const [m, k] of [[0, 3], [2, 3], [4, 40]]) x[m * K + k] = 9 * (k % 2 ? 1 : -1);
  const ys: Float32Array[] = [];
  for (const opset of [11, 17]) {
    const out = path.join(dir, `llm-${opset}.onnx`);
    await quantizeModel(writeMatMulModel(dir, K, N, W, { name: `src-${opset}.onnx`, opset }), 'llm-int8', out, { includeLmHead: true });
    const ops = readOnnxModel(out);
    assert.is(ops.nodes.some((n) => n.opType === 'GreaterOrEqual'), opset >= 12);
    ops.source.close();
    ys.push(await runY(out, x, M, K));
  }
  assert.equal(Array.from(ys[0]), Array.from(ys[1]));
});

test('fp16 model: Gemm transB=1 with bias and MatMul(x, Transpose(W)) equal the plain fp16 MatMul quantized (+ bias in fp16)', async () => {
  const dir = tmpDir();
  const half = (x: Float32Array) => halfToFloat(floatToHalf(x));
  const run16 = async (file: string) => {
    const s = await ort.InferenceSession.create(file, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
    const r = await s.run({ X: new ort.Tensor('float16', floatToHalf(X), [M, K]) });
    await s.release();
    return halfToFloat(r.Y.data as Uint16Array);
  };
  const write16 = (form: 'gemm-transB' | 'matmul-transpose') => {
    const g = new GraphBuilder(form);
    g.input('X', 'float16', ['m', K]);
    g.initializer('W', tensor('float16', [N, K], floatToHalf(transpose(W, K, N))));
    if (form === 'gemm-transB') {
      g.initializer('C', tensor('float16', [N], floatToHalf(BIAS)));
      g.node('Gemm', ['X', 'W', 'C'], ['Y'], { transB: 1 }, { name: '/model/layers.0/mlp/fc1/Gemm' });
    } else {
      g.node('Transpose', ['W'], ['Wt'], {});
      g.node('MatMul', ['X', 'Wt'], ['Y'], {}, { name: '/model/layers.0/mlp/fc1/MatMul' });
    }
    g.output('Y', 'float16', ['m', N]);
    const file = path.join(dir, `${form}-fp16.onnx`);
    writeFileSync(file, g.toModel({ opset: 17 }));
    return file;
  };
  const plainQ = path.join(dir, 'plain16-q4.onnx');
  await quantizeModel(writeMatMulModel(dir, K, N, W, { name: 'plain16.onnx', fp16: true }), 'q4', plainQ, { includeLmHead: true });
  const ref = await run16(plainQ);
  const b16 = half(BIAS);
  for (const form of ['gemm-transB', 'matmul-transpose'] as const) {
    const out = path.join(dir, `${form}-fp16-q4.onnx`);
    const r = await quantizeModel(write16(form), 'q4', out, { includeLmHead: true });
    assert.is(r.record.fraction_quantized, 1);
    const y = await run16(out);
    // The product is cast to fp16 first in both; the Gemm bias is then added in fp16.
    const expect = form === 'gemm-transB' ? half(Float32Array.from(ref, (v, i) => v + b16[i % N])) : ref;
    // ORT may add the bias before or after the product's cast to fp16: the two differ by the
    // product's rounding (½ ulp) plus two roundings of the sum (½ ulp of |sum| ≤ 2·max operand each),
    // i.e. at most 2.5 ulps of the larger operand.
    let maxUlps = 0;
    for (let i = 0; i < M * N; i++) {
      const operand = form === 'gemm-transB' ? Math.max(Math.abs(ref[i]), Math.abs(b16[i % N])) : Math.abs(expect[i]);
      const ulp = 2 ** (Math.floor(Math.log2(Math.max(operand, 2 ** -14))) - 10);
      maxUlps = Math.max(maxUlps, Math.abs(y[i] - expect[i]) / ulp);
    }
    assert.ok(maxUlps <= 2.5, `${form} fp16: ${maxUlps} ulps`);
  }
});

/** Attention(x, W, bias) with 2 heads, causal; x [1, S, K]. */
function writeAttention(dir: string, name: string, w: Float32Array, H: number, opset: number): string {
  const g = new GraphBuilder('attention');
  g.input('X', 'float', [1, 'S', H]);
  g.initializer('W', tensor('float', [H, 3 * H], w));
  g.initializer('B', tensor('float', [3 * H], gaussian(3 * H, 21, 0.1)));
  g.node('Attention', ['X', 'W', 'B'], ['Y'], { num_heads: 2, unidirectional: 1 }, { name: 'GptAttention_0', domain: 'com.microsoft' });
  g.output('Y', 'float', [1, 'S', H]);
  const file = path.join(dir, name);
  writeFileSync(file, g.toModel({ opset, domains: { 'com.microsoft': 1 } }));
  return file;
}

test('com.microsoft Attention: its qkv weight is quantized (no float W left) and the op attends exactly as with the dequantized weight', async () => {
  const dir = tmpDir();
  const H = 32, S = 6;
  const w = gaussian(H * 3 * H, 22, 0.2);
  const x = gaussian(S * H, 23);
  const run = async (file: string) => {
    const s = await ort.InferenceSession.create(file, { extra: quantSessionConfig() } as ort.InferenceSession.SessionOptions);
    const r = await s.run({ X: new ort.Tensor('float32', x, [1, S, H]) });
    await s.release();
    return r.Y.data as Float32Array;
  };
  for (const v of VARIANTS) {
    const src = writeAttention(dir, `att-${v}.onnx`, w, H, 11);
    const out = path.join(dir, `att-${v}-q.onnx`);
    const r = await quantizeModel(src, v, out);
    assert.equal(r.quantized, ['GptAttention_0']);
    assert.is(r.record.decoder_fraction_quantized, 1);
    // The effective weight ORT applies: the same weight quantized as a plain MatMul, times the identity.
    const plainQ = path.join(dir, `att-plain-${v}.onnx`);
    await quantizeModel(writeMatMulModel(dir, H, 3 * H, w, { name: `att-plain-src-${v}.onnx`, opset: 11 }), v, plainQ, { includeLmHead: true });
    const eff = v === 'nf4' || v === 'q4' || v === 'int8' ? await runY(plainQ, identity(H), H, H) : null;
    const q = readOnnxModel(out);
    assert.not.ok(q.initializers.has('W'), `${v}: float qkv weight dropped`);
    q.source.close();
    const y = await run(out);
    assert.ok(y.every(Number.isFinite));
    if (eff) {
      // Weight-only variants: the quantized Attention equals a float Attention with the dequantized weight.
      const y2 = await run(writeAttention(dir, `att-eff-${v}.onnx`, eff, H, 11));
      let maxDiff = 0;
      for (let i = 0; i < y.length; i++) maxDiff = Math.max(maxDiff, Math.abs(y[i] - y2[i]));
      assert.ok(maxDiff < 1e-5, `${v}: max |Δ| ${maxDiff}`);
    }
    const y0 = await run(src);
    assert.ok(y.some((val, i) => val !== y0[i]), `${v}: differs from the float model`);
  }
  assert.ok(existsSync(dir));
});

test.run();
