/**
 * com.microsoft Attention and MultiHeadAttention: decomposition (onnx/backward/decompose-attention.ts)
 * == ORT's kernel on random inputs (masks 1-D lengths, 1-D [2·B] ends/starts, 2-D and 3-D with
 * padding, unidirectional, past, attention_bias, qkv_hidden_sizes, mask_filter_value, opset 11,
 * MultiHeadAttention's cross-attention, decoder steps and BNSH key/value), plus random shapes
 * drawing all of these; then gradients == central differences inside a model, with pasts,
 * attention_bias and BNSH key/value computed from the activation.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float, type AttrInput, type GraphBuilder } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { compareWithKernel, randomValues, type InputSpec, type OpCase } from './kernel-harness.ts';

const r = mulberry32(11);
const f = (name: string, dims: number[], scale = 1): InputSpec => ({ name, type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), scale) });
const i32 = (name: string, dims: number[], data: number[]): InputSpec => ({ name, type: 'int32', dims, data });
const LEFT_PAD = [1, 1, 1, 1, 1, 0, 0, 1, 1, 1]; // [2, 5]: row 1 left-padded by 2

function attentionCase(o: { B?: number; S?: number; inW?: number; N?: number; sizes?: number[]; mask?: InputSpec | ''; P?: number; bias?: InputSpec | ''; attrs?: Record<string, AttrInput>; opset?: number }): OpCase {
  const B = o.B ?? 2;
  const S = o.S ?? 5;
  const inW = o.inW ?? 12;
  const N = o.N ?? 3;
  const sizes = o.sizes ?? [12, 12, 12];
  const total = sizes[0] + sizes[1] + sizes[2];
  const past = o.P === undefined ? '' : f('past', [2, B, N, o.P, sizes[0] / N]);
  const inputs: (InputSpec | '')[] = [f('input', [B, S, inW], 2), f('weights', [inW, total], 0.6), f('bias', [total], 0.5), o.mask ?? '', past, o.bias ?? ''];
  const attrs = { num_heads: N, ...(o.sizes ? { qkv_hidden_sizes: o.sizes } : {}), ...o.attrs };
  return { op: 'Attention', inputs, attrs, outputs: 2, opset: o.opset };
}

const attentionCases: [string, OpCase][] = [
  ['GPT-2 style: 2-D left-padded mask, unidirectional, mask_filter_value −3.4e38, opset 11', attentionCase({ P: 0, mask: i32('mask', [2, 5], LEFT_PAD), attrs: { unidirectional: 1, mask_filter_value: float(-3.4028234663852886e38) }, opset: 11 })],
  ['2-D mask, default mask_filter_value, bidirectional', attentionCase({ mask: i32('mask', [2, 5], LEFT_PAD) })],
  ['1-D key lengths (right padding)', attentionCase({ mask: i32('mask', [2], [5, 3]) })],
  ['3-D mask', attentionCase({ mask: i32('mask', [2, 5, 5], Array.from({ length: 50 }, (_, i) => (i % 7 === 3 ? 0 : 1))) })],
  ['qkv_hidden_sizes [12, 12, 6], scale', attentionCase({ sizes: [12, 12, 6], attrs: { scale: float(0.4) } })],
  ['past of 2, unidirectional, mask over past + new', attentionCase({ P: 2, mask: i32('mask', [2, 7], [1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1]), attrs: { unidirectional: 1 } })],
  ['attention_bias [1, 3, 5, 5]', attentionCase({ bias: f('attention_bias', [1, 3, 5, 5], 2), attrs: { unidirectional: 1 } })],
  ['1-D [2·B] mask: key ends then starts (left padding), unidirectional', attentionCase({ mask: i32('mask', [4], [5, 5, 0, 2]), attrs: { unidirectional: 1 } })],
  ['1-D [2·B] mask: ends and starts inside the row, bidirectional', attentionCase({ mask: i32('mask', [4], [4, 5, 1, 2]) })],
  ['1-D [3·B + 2] mask (key lengths first; the rest ORT\'s CPU kernel ignores)', attentionCase({ mask: i32('mask', [8], [5, 3, 1, 2, 0, 1, 3, 2]) })],
];
/** A random mask over L keys for rows whose real tokens are the last `lengths[b]` (left padding). */
function randomMask(kind: number, B: number, S: number, L: number, lengths: number[]): InputSpec {
  if (kind === 0) return i32('mask', [B, L], lengths.flatMap((l) => Array.from({ length: L }, (_, j) => (j >= L - l ? 1 : 0))));
  if (kind === 1) return i32('mask', [2 * B], [...lengths.map(() => L), ...lengths.map((l) => L - l)]);
  if (kind === 2) return i32('mask', [B], lengths.map((l) => l));
  return i32('mask', [B, S, L], Array.from({ length: B * S * L }, (_, i) => (i % L === L - 1 || r() < 0.7 ? 1 : 0)));
}
const MASK_KINDS = ['2-D left-padded', '1-D ends+starts', '1-D lengths', '3-D'];

// Random shapes: batch, sequence, heads, head size, past, mask form, padding and direction drawn.
for (let k = 0; k < 8; k++) {
  const B = 1 + Math.floor(r() * 3);
  const S = 1 + Math.floor(r() * 7);
  const N = [1, 2, 4][Math.floor(r() * 3)];
  const H = [2, 4, 8][Math.floor(r() * 3)];
  const P = r() < 0.4 ? 1 + Math.floor(r() * 4) : undefined;
  const L = S + (P ?? 0);
  const lengths = Array.from({ length: B }, () => S + (P ?? 0) - Math.floor(r() * S));
  const kind = Math.floor(r() * 4);
  const uni = Math.floor(r() * 2);
  attentionCases.push([`random shape #${k} (B ${B}, S ${S}, past ${P ?? 0}, ${N} heads of ${H}, ${MASK_KINDS[kind]} mask, unidirectional ${uni})`, attentionCase({ B, S, inW: 5, N, sizes: [N * H, N * H, N * H], P, mask: randomMask(kind, B, S, L, lengths), attrs: { unidirectional: uni } })]);
}
for (const [name, c] of attentionCases) {
  test(`Attention ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

function mhaCase(o: { B?: number; S?: number; L?: number; N?: number; H?: number; Dv?: number; mask?: InputSpec | ''; P?: number; attnBias?: InputSpec | ''; bias?: boolean; bnsh?: boolean; attrs?: Record<string, AttrInput> }): OpCase {
  const [B, S, N] = [o.B ?? 2, o.S ?? 4, o.N ?? 2];
  const L = o.L ?? S;
  const D = N * (o.H ?? 4);
  const Dv = o.Dv ?? D;
  const P = o.P ?? 0;
  const past: (InputSpec | '')[] = P ? [f('past_key', [B, N, P, D / N]), f('past_value', [B, N, P, Dv / N])] : ['', ''];
  const kv = o.bnsh ? [f('key', [B, N, L, D / N], 2), f('value', [B, N, L, Dv / N], 2)] : [f('key', [B, L, D], 2), f('value', [B, L, Dv], 2)];
  const inputs: (InputSpec | '')[] = [f('query', [B, S, D], 2), ...kv, o.bias === false ? '' : f('bias', [2 * D + Dv], 0.5), o.mask ?? '', o.attnBias ?? '', ...past];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  return { op: 'MultiHeadAttention', inputs, attrs: { num_heads: N, ...o.attrs }, outputs: 3 };
}

/** The case with one more (trailing) input. */
function withInput(c: OpCase, x: InputSpec): OpCase {
  return { ...c, inputs: [...c.inputs, x] };
}

const mhaCases: [string, OpCase][] = [
  ['self-attention with a 2-D key padding mask', mhaCase({ mask: i32('key_padding_mask', [2, 4], [1, 1, 1, 1, 0, 1, 1, 1]) })],
  ['cross-attention (L 6 ≠ S 3), value width 4, 1-D key lengths', mhaCase({ S: 3, L: 6, Dv: 4, mask: i32('key_padding_mask', [2], [6, 4]) })],
  ['past of 2 and attention_bias, scale', mhaCase({ P: 2, attnBias: f('attention_bias', [2, 1, 4, 6], 1), attrs: { scale: float(0.5) } })],
  ['unidirectional', mhaCase({ attrs: { unidirectional: 1 } })],
  ['unidirectional with a left-padded key padding mask', mhaCase({ mask: i32('key_padding_mask', [2, 4], [1, 1, 1, 1, 0, 0, 1, 1]), attrs: { unidirectional: 1 } })],
  ['unidirectional, padding mask, mask_filter_value −1e9', mhaCase({ mask: i32('key_padding_mask', [2, 4], [0, 1, 1, 1, 0, 0, 0, 1]), attrs: { unidirectional: 1, mask_filter_value: float(-1e9) } })],
  ['3-D mask [B, S, L]', mhaCase({ S: 3, L: 5, mask: i32('key_padding_mask', [2, 3, 5], Array.from({ length: 30 }, (_, i) => (i % 4 === 1 ? 0 : 1))) })],
  ['decoder step: past of 5, unidirectional, 2-D mask over past + new (left padding)', mhaCase({ S: 1, L: 1, P: 5, mask: i32('key_padding_mask', [2, 6], [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1]), attrs: { unidirectional: 1 } })],
  ['[3·B + 2] key padding mask (key lengths first; the rest ORT\'s CPU kernel ignores)', mhaCase({ S: 3, L: 5, mask: i32('key_padding_mask', [8], [5, 2, 1, 3, 0, 2, 1, 4]) })],
  ['decoder step with past_sequence_length (ignored by ORT\'s CPU kernel)', withInput(mhaCase({ S: 1, L: 1, P: 4, attrs: { unidirectional: 1 } }), i32('past_sequence_length', [1], [2]))],
  ['BNSH key/value (cross-attention cache), with bias', mhaCase({ S: 3, L: 5, bnsh: true, mask: i32('key_padding_mask', [2], [5, 3]) })],
  ['BNSH key/value without bias, attention_bias', mhaCase({ S: 2, L: 4, bnsh: true, bias: false, attnBias: f('attention_bias', [1, 2, 2, 4], 1) })],
];
// Random shapes: batch, sequence, key length, heads, head and value sizes, past, mask form, layout drawn.
for (let k = 0; k < 8; k++) {
  const B = 1 + Math.floor(r() * 3);
  const S = 1 + Math.floor(r() * 6);
  const bnsh = r() < 0.25;
  const self = !bnsh && r() < 0.5;
  const L = self ? S : 1 + Math.floor(r() * 6);
  const P = !bnsh && r() < 0.4 ? 1 + Math.floor(r() * 4) : 0;
  const [N, H] = [[1, 2, 4][Math.floor(r() * 3)], [2, 4, 8][Math.floor(r() * 3)]];
  const Dv = P || bnsh ? N * H : N * [2, 4, 8][Math.floor(r() * 3)]; // ORT wants value width = key width with a past or BNSH
  const T = L + P;
  const lengths = Array.from({ length: B }, () => T - Math.floor(r() * T));
  const kind = Math.floor(r() * 4);
  const mask = kind === 1 ? i32('key_padding_mask', [B], lengths) : randomMask(kind === 0 ? 0 : kind === 2 ? 2 : 3, B, S, T, lengths);
  const uni = self && r() < 0.5 ? 1 : 0;
  mhaCases.push([`random shape #${k} (B ${B}, S ${S}, L ${L}, past ${P}, ${N} heads of ${H}, Dv ${Dv}, ${bnsh ? 'BNSH' : 'BSD'} key/value, mask ${kind}, unidirectional ${uni})`, mhaCase({ B, S, L, N, H, Dv, P: P || undefined, bnsh, mask, attrs: { unidirectional: uni } })]);
}
for (const [name, c] of mhaCases) {
  test(`MultiHeadAttention ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

/** A [B,T] int32 mask that drops tokens with id 1 (random positions, as padding would). */
function idMask(g: GraphBuilder, h: { i64(v: number[], d?: number[]): string }): string {
  return g.node('Cast', [g.node('Greater', ['input_ids', h.i64([1], [])])[0]], 1, { to: 6 })[0];
}

type H = { rand(d: number[], s?: number): string; i64(v: number[], d?: number[]): string; f32(v: number[], d: number[]): string };
const ms = { domains: { 'com.microsoft': 1 } };
const attentionBody = (attrs: Record<string, AttrInput>) => (g: GraphBuilder, act: string, h: H) => {
  const [y] = g.node('Attention', [act, h.rand([6, 18], 0.8), h.rand([18], 0.3), idMask(g, h)], 1, { num_heads: 2, ...attrs }, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
};
check('Attention (2-D mask, unidirectional)', 'Attention', attentionBody({ unidirectional: 1 }), ms);
check('Attention at opset 11 (attribute forms), mask_filter_value −3.4e38', 'Attention', attentionBody({ unidirectional: 1, mask_filter_value: float(-3.4028234663852886e38) }), { ...ms, opset: 11 });
check('MultiHeadAttention (self, key padding mask, bias)', 'MultiHeadAttention', (g, act, h) => {
  const [k] = g.node('Tanh', [act]);
  const [y] = g.node('MultiHeadAttention', [act, k, act, h.rand([18], 0.3), idMask(g, h)], 1, { num_heads: 3 }, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
}, ms);

/** [B,T,6] → [B, 3 heads, T, 2] (the BNSH layout) through a projection and Tanh. */
function bnshFrom(g: GraphBuilder, act: string, h: H): string {
  const [x] = g.node('Tanh', [g.node('MatMul', [act, h.rand([6, 6])])[0]]);
  return g.node('Transpose', [g.node('Reshape', [x, h.i64([0, 0, 3, 2])])[0]], 1, { perm: [0, 2, 1, 3] })[0];
}
check('Attention with a past from the activation and a [2·B] ends/starts mask, unidirectional', 'Attention', (g, act, h) => {
  // past [2, B, 2 heads, T, 3] from a projection of act; keys = past + new (2T); odd rows start at key 1.
  const [proj] = g.node('MatMul', [act, h.rand([6, 12])]);
  const [past] = g.node('Transpose', [g.node('Reshape', [proj, h.i64([0, 0, 2, 2, 3])])[0]], 1, { perm: [2, 0, 3, 1, 4] });
  const [shape] = g.node('Shape', [act]);
  const [B] = g.node('Slice', [shape, h.i64([0]), h.i64([1])]);
  const [T] = g.node('Slice', [shape, h.i64([1]), h.i64([2])]);
  const [ends] = g.node('Expand', [g.node('Add', [T, T])[0], B]);
  const [starts] = g.node('Mod', [g.node('Range', [h.i64([0], []), g.node('Squeeze', [B, h.i64([0])])[0], h.i64([1], [])])[0], h.i64([2], [])]);
  const [mask] = g.node('Cast', [g.node('Concat', [ends, starts], 1, { axis: 0 })[0]], 1, { to: 6 });
  const [y] = g.node('Attention', [act, h.rand([6, 18], 0.8), h.rand([18], 0.3), mask, past], 2, { num_heads: 2, unidirectional: 1 }, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
}, ms);
check('MultiHeadAttention with a past and an attention_bias from the activation, 2-D mask over past + new, unidirectional', 'MultiHeadAttention', (g, act, h) => {
  const [a1] = g.node('MatMul', [act, h.rand([6, 4])]);
  const [a2] = g.node('Tanh', [g.node('MatMul', [act, h.rand([6, 4])])[0]]);
  const [x] = g.node('MatMul', [a1, g.node('Transpose', [a2], 1, { perm: [0, 2, 1] })[0]]); // [B, T, T]
  const [bias] = g.node('Unsqueeze', [g.node('Concat', [x, x], 1, { axis: 2 })[0], h.i64([1])]); // [B, 1, T, 2T]
  const [mask] = g.node('Concat', [idMask(g, h), idMask(g, h)], 1, { axis: 1 });
  const ins = [act, g.node('Tanh', [act])[0], act, h.rand([18], 0.3), mask, bias, bnshFrom(g, act, h), bnshFrom(g, act, h)];
  const [y] = g.node('MultiHeadAttention', ins, 3, { num_heads: 3, unidirectional: 1 }, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
}, ms);
check('MultiHeadAttention with BNSH key/value from the activation (cross-attention cache)', 'MultiHeadAttention', (g, act, h) => {
  const [y] = g.node('MultiHeadAttention', [act, bnshFrom(g, act, h), bnshFrom(g, act, h), h.rand([18], 0.3), idMask(g, h)], 1, { num_heads: 3 }, { domain: 'com.microsoft' });
  return { out: y, k: 6 };
}, ms);

test.run();
