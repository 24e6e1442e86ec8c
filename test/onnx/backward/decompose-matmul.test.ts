/**
 * com.microsoft FusedMatMul: decomposition (onnx/backward/decompose-matmul.ts) == ORT's kernel
 * (alpha, transA/transB, transBatchA/transBatchB, broadcast batch axes; fixed and random shapes),
 * then gradient == central differences with both operands depending on the activation.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float, type AttrInput } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { compareWithKernel, randomValues, type InputSpec, type OpCase } from './kernel-harness.ts';

const r = mulberry32(31);
const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const f = (name: string, dims: number[]): InputSpec => ({ name, type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), 2) });
const fused = (a: number[], b: number[], attrs: Record<string, AttrInput>): OpCase => ({ op: 'FusedMatMul', inputs: [f('A', a), f('B', b)], attrs, outputs: 1 });

const cases: [string, OpCase][] = [
  ['transB, alpha 0.5 (3-D × 2-D)', fused([2, 3, 4], [5, 4], { transB: 1, alpha: float(0.5) })],
  ['transA', fused([2, 4, 3], [4, 5], { transA: 1 })],
  ['transA and transB, 4-D', fused([2, 3, 4, 5], [2, 3, 6, 4], { transA: 1, transB: 1 })],
  ['broadcast batch axes [2, 1, 3, 4] × [3, 4, 2]', fused([2, 1, 3, 4], [3, 4, 2], { alpha: float(-1.5) })],
  ['transBatchA (3-D)', fused([3, 2, 4], [2, 4, 5], { transBatchA: 1 })],
  ['transBatchB (3-D)', fused([2, 3, 4], [4, 2, 5], { transBatchB: 1 })],
  ['transBatchA with transA (4-D)', fused([3, 2, 2, 4], [2, 2, 3, 5], { transBatchA: 1, transA: 1 })],
  ['transBatchB with transB (4-D)', fused([2, 2, 3, 4], [5, 2, 2, 4], { transBatchB: 1, transB: 1 })],
];
// Random shapes: rank, sizes and every flag drawn (transBatch only where ORT allows it: equal ranks ≥ 3).
for (let k = 0; k < 8; k++) {
  const rank = int(2, 4);
  const batch = Array.from({ length: rank - 2 }, () => int(1, 3));
  const [M, K, N] = [int(1, 5), int(1, 5), int(1, 5)];
  const flags = { transA: int(0, 1), transB: int(0, 1), transBatchA: rank > 2 ? int(0, 1) : 0, transBatchB: rank > 2 ? int(0, 1) : 0 };
  // Stored shapes: the logical [batch, M, K] / [batch, K, N] with the flags' permutations undone.
  const stored = (logical: number[], tb: number, t: number) => {
    let d = logical.slice();
    if (t) d = [...d.slice(0, -2), d[d.length - 1], d[d.length - 2]];
    if (tb && d.length > 2) d = [d[d.length - 2], ...d.slice(0, -2), d[d.length - 1]];
    return d;
  };
  const a = stored([...batch, M, K], flags.transBatchA, flags.transA);
  const b = stored([...batch, K, N], flags.transBatchB, flags.transB);
  cases.push([`random #${k} (A [${a}], B [${b}], ${JSON.stringify(flags).replace(/"/g, '')})`, fused(a, b, { ...flags, alpha: float(0.5 + r()) })]);
}
for (const [name, c] of cases) {
  test(`FusedMatMul ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

const ms = { domains: { 'com.microsoft': 1 } };
check('FusedMatMul: act · (actᵀ·tanh(act)) with transA and alpha', 'FusedMatMul', (g, act, h) => {
  const [gram] = g.node('FusedMatMul', [act, g.node('Tanh', [act])[0]], 1, { transA: 1, alpha: float(0.3) }, { domain: 'com.microsoft' }); // [B, 6, 6]
  const [y] = g.node('FusedMatMul', [act, gram], 1, { alpha: float(0.5) }, { domain: 'com.microsoft' });
  return { out: g.node('Add', [y, g.node('FusedMatMul', [act, h.rand([6, 6])], 1, { transB: 1 }, { domain: 'com.microsoft' })[0]])[0], k: 6 };
}, ms);

test.run();
