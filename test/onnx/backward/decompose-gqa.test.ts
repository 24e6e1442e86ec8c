/**
 * GroupQueryAttention: the decomposition (onnx/backward/decompose-gqa.ts) equals ORT's kernel on
 * random inputs (packed and separate q/k/v, GQA head mapping, rotary full/partial/interleaved,
 * right padding through seqlens_k, past, softcap, scale, local window), then its gradient passes
 * central differences inside a model, with and without padded rows.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float, type AttrInput, type GraphBuilder } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { syntheticModel } from './fd-harness.ts';
import { buildAttributionGraph } from '../../../onnx/backward/graph.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { compareWithKernel, randomValues, type InputSpec } from './kernel-harness.ts';

const r = mulberry32(3);

/** Llama-style rotary tables for positions 0..maxS-1. */
function rotaryCaches(maxS: number, half: number): number[][] {
  const cos: number[] = [];
  const sin: number[] = [];
  for (let p = 0; p < maxS; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * Math.pow(10000, -i / half);
      cos.push(Math.cos(a));
      sin.push(Math.sin(a));
    }
  }
  return [cos, sin];
}

interface GqaCase {
  B: number;
  S: number;
  N: number;
  K: number;
  H: number;
  lengths: number[];
  past?: number;
  half?: number;
  packed?: boolean;
  attrs?: Record<string, AttrInput>;
}

function gqaInputs(c: GqaCase): (InputSpec | '')[] {
  const P = c.past ?? 0;
  const f = (name: string, dims: number[], scale = 2): InputSpec => ({ name, type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), scale) });
  const [cos, sin] = rotaryCaches(32, c.half ?? c.H / 2);
  const half = c.half ?? c.H / 2;
  const qkv: (InputSpec | '')[] = c.packed === false
    ? [f('q', [c.B, c.S, c.N * c.H]), f('k', [c.B, c.S, c.K * c.H]), f('v', [c.B, c.S, c.K * c.H])]
    : [f('qkv', [c.B, c.S, (c.N + 2 * c.K) * c.H]), '', ''];
  return [
    ...qkv,
    f('past_key', [c.B, c.K, P, c.H], 1),
    f('past_value', [c.B, c.K, P, c.H], 1),
    { name: 'seqlens_k', type: 'int32', dims: [c.B], data: c.lengths.map((l) => l - 1) },
    { name: 'total_sequence_length', type: 'int32', dims: [1], data: [P + c.S] },
    { name: 'cos_cache', type: 'float32', dims: [32, half], data: cos },
    { name: 'sin_cache', type: 'float32', dims: [32, half], data: sin },
  ];
}

// ORT's CPU kernel wants head_size % 16 == 0 with rotary and rotary half-dims a multiple of 8.
const cases: [string, GqaCase][] = [
  ['packed qkv, 4 query / 2 kv heads, rotary', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 5], attrs: { do_rotary: 1 } }],
  ['right padding (seqlens_k [4, 2])', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 3], attrs: { do_rotary: 1 } }],
  ['separate q/k/v, padding, no rotary', { B: 3, S: 4, N: 4, K: 1, H: 16, lengths: [4, 1, 3], packed: false }],
  ['interleaved rotary', { B: 2, S: 4, N: 4, K: 2, H: 16, lengths: [4, 2], attrs: { do_rotary: 1, rotary_interleaved: 1 } }],
  ['partial rotary (16 of 32 dims)', { B: 2, S: 4, N: 4, K: 2, H: 32, half: 8, lengths: [4, 4], attrs: { do_rotary: 1 } }],
  ['scale and softcap', { B: 2, S: 4, N: 4, K: 2, H: 16, lengths: [4, 3], attrs: { do_rotary: 1, scale: float(0.3), softcap: float(2) } }],
  ['local window 3', { B: 2, S: 7, N: 2, K: 1, H: 16, lengths: [7, 5], attrs: { do_rotary: 1, local_window_size: 3 } }],
  ['dense past of 3, one row', { B: 1, S: 2, N: 4, K: 2, H: 16, lengths: [5], past: 3, attrs: { do_rotary: 1 } }],
  ['decode step after a past of 3', { B: 2, S: 1, N: 4, K: 2, H: 16, lengths: [4, 4], past: 3, attrs: { do_rotary: 1 } }],
];
// Random shapes: batch, sequence, heads, GQA ratio, head size, row lengths and rotary flavour drawn.
const pick = <T,>(xs: T[]) => xs[Math.floor(r() * xs.length)];
for (let k = 0; k < 6; k++) {
  const S = 1 + Math.floor(r() * 7);
  const B = 1 + Math.floor(r() * 3);
  const K = pick([1, 2]);
  const H = pick([16, 32]);
  const rotary = pick([0, 1]);
  cases.push([`random shape #${k} (B ${B}, S ${S}, ${K} kv heads, H ${H}, rotary ${rotary})`, {
    B, S, K, H, N: K * pick([1, 2, 4]), lengths: Array.from({ length: B }, () => 1 + Math.floor(r() * S)),
    packed: pick([true, false]), attrs: { do_rotary: rotary, rotary_interleaved: pick([0, 1]) },
  }]);
}
for (const [name, c] of cases) {
  test(`GroupQueryAttention ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const attrs = { num_heads: c.N, kv_num_heads: c.K, ...c.attrs };
    const { relErr } = await compareWithKernel({ op: 'GroupQueryAttention', inputs: gqaInputs(c), attrs, outputs: 3 });
    assert.is(relErr[1], null, 'present_key is not reproduced');
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

/**
 * act [B,T,6] → qkv projection → GroupQueryAttention (2 query heads, 1 kv head, H 16, rotary) →
 * [B,T,32]. With `padded`, odd rows have one token less (seqlens_k = T − 2), as a padded batch has.
 */
function gqaBody(padded: boolean, attrs: Record<string, AttrInput>) {
  return (g: GraphBuilder, act: string, h: { rand(d: number[], s?: number): string; f32(v: number[], d: number[]): string; i64(v: number[], d?: number[]): string }) => {
    const [qkv] = g.node('MatMul', [act, h.rand([6, 64], 0.8)]);
    const [shape] = g.node('Shape', [act]);
    const [B] = g.node('Gather', [shape, h.i64([0], [])], 1, { axis: 0 });
    const [T] = g.node('Gather', [shape, h.i64([1], [])], 1, { axis: 0 });
    const [last] = g.node('Sub', [T, h.i64([1], [])]);
    const [rows] = g.node('Range', [h.i64([0], []), B, h.i64([1], [])]);
    const [odd] = g.node('Mod', [rows, h.i64([2], [])]);
    const [lens] = g.node('Sub', [g.node('Expand', [last, g.node('Unsqueeze', [B, h.i64([0])])[0]])[0], padded ? odd : g.node('Mul', [odd, h.i64([0], [])])[0]]);
    const [seqlens] = g.node('Cast', [lens], 1, { to: 6 });
    const [total] = g.node('Cast', [g.node('Unsqueeze', [T, h.i64([0])])[0]], 1, { to: 6 });
    const [cos, sin] = rotaryCaches(16, 8);
    const [y] = g.node('GroupQueryAttention', [qkv, '', '', '', '', seqlens, total, h.f32(cos, [16, 8]), h.f32(sin, [16, 8])], 3, { num_heads: 2, kv_num_heads: 1, do_rotary: 1, ...attrs }, { domain: 'com.microsoft' });
    return { out: y, k: 32 };
  };
}

const ms = { domains: { 'com.microsoft': 1 } };
check('GroupQueryAttention (packed, rotary, GQA heads)', 'GroupQueryAttention', gqaBody(false, {}), ms);
check('GroupQueryAttention with padded rows', 'GroupQueryAttention', gqaBody(true, {}), ms);
check('GroupQueryAttention with softcap and interleaved rotary', 'GroupQueryAttention', gqaBody(true, { softcap: float(1.5), rotary_interleaved: 1 }), ms);

test('a GroupQueryAttention feature the decomposition lacks is refused in one line naming the node', async () => {
  const bytes = syntheticModel((g, act, h) => gqaBody(false, { smooth_softmax: 1 })(g, act, h), 7, ms.domains);
  try {
    await buildAttributionGraph(readOnnxModel(bytes), { layerTensors: ['act'] });
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.match((e as Error).message, /^GroupQueryAttention \(node GroupQueryAttention_\d+\): not supported: smooth_softmax=1/);
  }
});

test.run();
