import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { quantizeModel } from '../../../onnx/quantize/index.ts';
import { gaussian, identity, quantizedNode, rng, runY, tmpDir, writeMatMulModel } from './fixtures.ts';

const f = Math.fround;
const rne = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** Brute-force LLM.int8() (bnb int8_vectorwise_quant + int8_mixed_scaled_mm), written out loop by loop. */
function bruteForce(x: Float32Array, M: number, w: Float32Array, K: number, N: number, t: number) {
  // weights: per output feature n (column of B), absmax over K, round half to even
  const scb = new Float64Array(N);
  const cb = new Int32Array(K * N);
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let k = 0; k < K; k++) m = Math.max(m, Math.abs(w[k * N + n]));
    scb[n] = m;
    const r = f(127 / m);
    for (let k = 0; k < K; k++) cb[k * N + n] = rne(f(w[k * N + n] * r));
  }
  // outlier columns over ALL tokens
  const outlierCol = new Array<boolean>(K).fill(false);
  for (let i = 0; i < M * K; i++) if (Math.abs(x[i]) >= t) outlierCol[i % K] = true;
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const row = Array.from(x.subarray(m * K, (m + 1) * K), (v) => (Math.abs(v) >= t ? 0 : v));
    const sca = Math.max(...row.map(Math.abs));
    const r = f(127 / sca);
    const ca = row.map((v, k) => (outlierCol[k] ? 0 : rne(f(v * r))));
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += ca[k] * cb[k * N + n];
      let out = acc * sca * scb[n] * 6.200124e-5;
      for (let k = 0; k < K; k++) if (outlierCol[k]) out += x[m * K + k] * (cb[k * N + n] * scb[n] * 7.874015718698502e-3);
      y[m * N + n] = out;
    }
  }
  return { y, outliers: outlierCol.filter(Boolean).length };
}

test('llm-int8: ORT output equals a brute-force LLM.int8() decomposition on inputs with planted outliers', async () => {
  const dir = tmpDir();
  const K = 80, N = 24, M = 9;
  const w = gaussian(K * N, 4, 0.05);
  const src = writeMatMulModel(dir, K, N, w);
  const out = path.join(dir, 'llm.onnx');
  const r = await quantizeModel(src, 'llm-int8', out, { includeLmHead: true });
  assert.is(r.settings.outlierThreshold, 6);
  const x = gaussian(M * K, 8);
  const rand = rng(3);
  // plant outliers: columns 5 and 33 on one token each, column 60 on all tokens; one exactly at 6.0
  x[2 * K + 5] = 9.5;
  x[7 * K + 33] = -14;
  for (let m = 0; m < M; m++) x[m * K + 60] = 6 + 3 * rand();
  x[4 * K + 61] = 6.0;
  const { y: ref, outliers } = bruteForce(x, M, w, K, N, 6);
  assert.is(outliers, 4);
  const y = await runY(out, x, M, K);
  let scale = 0;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - ref[i]) <= 2e-6 * scale, `y[${i}] ${y[i]} vs ${ref[i]}`);

  // The decomposition matters: without the float outlier path (threshold above every |x|) the result differs.
  const { y: noOutlier } = bruteForce(x, M, w, K, N, 1e9);
  let diff = 0;
  for (let i = 0; i < y.length; i++) diff = Math.max(diff, Math.abs(y[i] - noOutlier[i]));
  assert.ok(diff > 1e-3 * scale, `outlier path changed nothing (${diff})`);

  // No outliers at all (threshold larger than every input): pure int8 path, still exact.
  const small = gaussian(M * K, 12, 0.5);
  const y2 = await runY(out, small, M, K);
  const { y: ref2, outliers: o2 } = bruteForce(small, M, w, K, N, 6);
  assert.is(o2, 0);
  for (let i = 0; i < y2.length; i++) assert.ok(Math.abs(y2[i] - ref2[i]) <= 2e-6 * scale, `no-outlier y[${i}]`);
});

test('llm-int8: stored CB/SCB are bnb vector-wise int8, and the dequantized weight is what the outlier path applies', async () => {
  const dir = tmpDir();
  const K = 16, N = 12;
  const w = gaussian(K * N, 6, 0.2);
  const src = writeMatMulModel(dir, K, N, w);
  const out = path.join(dir, 'llm.onnx');
  await quantizeModel(src, 'llm-int8', out, { includeLmHead: true });
  const { inputs } = quantizedNode(out, 'MatMulInteger');
  const cb = new Int8Array(inputs[1]!.buffer, inputs[1]!.byteOffset, K * N);
  // Identity × 10 makes every column an outlier column, so Y = 10 * dequant(CB) exactly through the float path.
  const x = identity(K).map((v) => v * 10);
  const y = await runY(out, x, K, K);
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let k = 0; k < K; k++) m = Math.max(m, Math.abs(w[k * N + n]));
    for (let k = 0; k < K; k++) {
      assert.is(cb[k * N + n], rne(f(w[k * N + n] * f(127 / m))), `CB[${k},${n}]`);
      const deq = f(f(cb[k * N + n] * f(m)) * f(7.874015718698502e-3));
      assert.ok(Math.abs(y[k * N + n] - 10 * deq) <= 1e-6 * Math.abs(10 * deq) + 1e-9, `W_eff[${k},${n}]`);
    }
  }
});

/** ORT DynamicQuantizeLinear + MatMulInteger, by hand. */
function bruteDynamic(x: Float32Array, M: number, wq: Int8Array, ws: number, K: number, N: number): Float64Array {
  let lo = 0, hi = 0;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const s = f((hi - lo) / 255);
  const zp = Math.max(0, Math.min(255, rne(f(0 - f(lo / s)))));
  const q = Array.from(x, (v) => Math.max(0, Math.min(255, rne(f(v / s)) + zp)));
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += (q[m * K + k] - zp) * wq[k * N + n];
      y[m * N + n] = acc * f(s * ws);
    }
  return y;
}

test('dynamic-int8: per-tensor symmetric int8 weights; ORT output equals DynamicQuantizeLinear + integer GEMM by hand', async () => {
  const dir = tmpDir();
  const K = 64, N = 20, M = 6;
  const w = gaussian(K * N, 14, 0.1);
  const src = writeMatMulModel(dir, K, N, w);
  const out = path.join(dir, 'dyn.onnx');
  await quantizeModel(src, 'dynamic-int8', out, { includeLmHead: true });
  const { inputs } = quantizedNode(out, 'MatMulInteger');
  const wq = new Int8Array(inputs[1]!.slice().buffer);
  const m = readScale(out);
  let absmax = 0;
  for (const v of w) absmax = Math.max(absmax, Math.abs(v));
  assert.is(m, f(absmax / 127));
  for (let i = 0; i < K * N; i++) assert.is(wq[i], rne(f(w[i] / m)), `Wq[${i}]`);
  const x = gaussian(M * K, 15, 2);
  const y = await runY(out, x, M, K);
  const ref = bruteDynamic(x, M, wq, m, K, N);
  let scale = 0;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - ref[i]) <= 1e-6 * scale, `y[${i}] ${y[i]} vs ${ref[i]}`);
});

function readScale(file: string): number {
  const { inputs } = quantizedNode(file, 'Mul');
  // The first Mul multiplies the activation scale by the weight scale initializer.
  const b = inputs.find((x) => x && x.length === 4)!;
  return new Float32Array(b.slice().buffer)[0];
}

test.run();
