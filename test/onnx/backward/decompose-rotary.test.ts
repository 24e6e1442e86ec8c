/**
 * com.microsoft RotaryEmbedding: decomposition == ORT's kernel (3-D and 4-D inputs, position_ids
 * [B,S] and [1] offsets, interleaved, partial rotary, is_packed_batching and scale, which ORT's CPU
 * kernel ignores on these inputs), then gradient == central differences.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float, type AttrInput } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { compareWithKernel, randomValues, type InputSpec } from './kernel-harness.ts';

const r = mulberry32(17);
const MAX = 24;

function caches(half: number): InputSpec[] {
  const cos: number[] = [];
  const sin: number[] = [];
  for (let p = 0; p < MAX; p++) for (let i = 0; i < half; i++) {
    const a = p * Math.pow(10000, -i / half);
    cos.push(Math.cos(a));
    sin.push(Math.sin(a));
  }
  return [{ name: 'cos_cache', type: 'float32', dims: [MAX, half], data: cos }, { name: 'sin_cache', type: 'float32', dims: [MAX, half], data: sin }];
}

function rotaryCase(dims: number[], ids: InputSpec, half: number, attrs: Record<string, AttrInput>) {
  const input: InputSpec = { name: 'input', type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), 2) };
  return { op: 'RotaryEmbedding', inputs: [input, ids, ...caches(half)], attrs, outputs: 1 };
}
const ids2 = (B: number, S: number, start: number[]): InputSpec => ({ name: 'position_ids', type: 'int64', dims: [B, S], data: start.flatMap((s0) => Array.from({ length: S }, (_, s) => s0 + s)) });
const offset = (o: number): InputSpec => ({ name: 'position_ids', type: 'int64', dims: [1], data: [o] });

const cases: [string, ReturnType<typeof rotaryCase>][] = [
  ['3-D input, whole heads (num_heads 0), position_ids [B,S]', rotaryCase([2, 5, 32], ids2(2, 5, [0, 3]), 8, {})],
  ['3-D input, 4 heads of 8, offset position', rotaryCase([2, 4, 32], offset(5), 4, { num_heads: 4 })],
  ['3-D input, interleaved', rotaryCase([2, 5, 32], ids2(2, 5, [1, 0]), 4, { num_heads: 4, interleaved: 1 })],
  ['3-D input, partial rotary (8 of 16 dims)', rotaryCase([2, 3, 32], ids2(2, 3, [0, 2]), 4, { num_heads: 2, rotary_embedding_dim: 8 })],
  ['4-D input [B,N,S,H]', rotaryCase([2, 3, 5, 8], ids2(2, 5, [0, 4]), 4, {})],
  ['4-D input, interleaved, offset', rotaryCase([2, 2, 4, 8], offset(2), 4, { interleaved: 1 })],
  ['is_packed_batching and scale (ORT\'s CPU kernel ignores both on 3-D input)', rotaryCase([2, 4, 32], ids2(2, 4, [3, 1]), 4, { num_heads: 4, is_packed_batching: 1, scale: float(3) })],
];
// Random shapes: batch, sequence, heads, head size (rotary half-dims), layout, positions drawn.
for (let k = 0; k < 4; k++) {
  const B = 1 + Math.floor(r() * 3);
  const S = 1 + Math.floor(r() * 6);
  const N = 1 + Math.floor(r() * 3);
  const half = 1 + Math.floor(r() * 4);
  const H = 2 * half;
  const four = r() < 0.5;
  const ids = r() < 0.5 ? offset(Math.floor(r() * 10)) : ids2(B, S, Array.from({ length: B }, () => Math.floor(r() * 10)));
  const attrs = { interleaved: Math.floor(r() * 2), ...(four ? {} : { num_heads: N }) };
  cases.push([`random shape #${k} (B ${B}, S ${S}, ${N} heads of ${H}, ${four ? '4-D' : '3-D'})`, rotaryCase(four ? [B, N, S, H] : [B, S, N * H], ids, half, attrs)]);
}
for (const [name, c] of cases) {
  test(`RotaryEmbedding ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

const ms = { domains: { 'com.microsoft': 1 } };
check('RotaryEmbedding (3-D, 3 heads of 2, offset positions)', 'RotaryEmbedding', (g, act, h) => {
  const [cos, sin] = caches(1);
  const [y] = g.node('RotaryEmbedding', [act, h.i64([1]), h.f32(Array.from(cos.data), cos.dims), h.f32(Array.from(sin.data), sin.dims)], 1, { num_heads: 3 }, { domain: 'com.microsoft' });
  return { out: g.node('Mul', [y, y])[0], k: 6 };
}, ms);
check('RotaryEmbedding interleaved, whole heads', 'RotaryEmbedding', (g, act, h) => {
  const [cos, sin] = caches(3);
  const [y] = g.node('RotaryEmbedding', [act, h.i64([0]), h.f32(Array.from(cos.data), cos.dims), h.f32(Array.from(sin.data), sin.dims)], 1, { interleaved: 1 }, { domain: 'com.microsoft' });
  return { out: g.node('Tanh', [y])[0], k: 6 };
}, ms);

test.run();
