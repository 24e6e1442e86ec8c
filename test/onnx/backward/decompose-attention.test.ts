/**
 * com.microsoft Attention and MultiHeadAttention: decomposition (onnx/backward/decompose-attention.ts)
 * == ORT's kernel on random inputs (masks 1-D/2-D/3-D with padding, unidirectional, past,
 * attention_bias, qkv_hidden_sizes, mask_filter_value, opset 11), then gradients == central
 * differences inside a model.
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
];
// Random shapes: batch, sequence, heads, head size, left padding and direction drawn.
for (let k = 0; k < 5; k++) {
  const B = 1 + Math.floor(r() * 3);
  const S = 1 + Math.floor(r() * 7);
  const N = [1, 2, 4][Math.floor(r() * 3)];
  const H = [2, 4, 8][Math.floor(r() * 3)];
  const lengths = Array.from({ length: B }, () => 1 + Math.floor(r() * S));
  const mask = i32('mask', [B, S], lengths.flatMap((l) => Array.from({ length: S }, (_, j) => (j >= S - l ? 1 : 0))));
  const uni = Math.floor(r() * 2);
  attentionCases.push([`random shape #${k} (B ${B}, S ${S}, ${N} heads of ${H}, left-padded, unidirectional ${uni})`, attentionCase({ B, S, inW: 5, N, sizes: [N * H, N * H, N * H], mask, attrs: { unidirectional: uni } })]);
}
for (const [name, c] of attentionCases) {
  test(`Attention ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

function mhaCase(o: { S?: number; L?: number; Dv?: number; mask?: InputSpec | ''; P?: number; attnBias?: InputSpec | ''; attrs?: Record<string, AttrInput> }): OpCase {
  const [B, S, L, D, N] = [2, o.S ?? 4, o.L ?? o.S ?? 4, 8, 2];
  const Dv = o.Dv ?? D;
  const P = o.P ?? 0;
  const past: (InputSpec | '')[] = P ? [f('past_key', [B, N, P, D / N]), f('past_value', [B, N, P, Dv / N])] : ['', ''];
  const inputs: (InputSpec | '')[] = [f('query', [B, S, D], 2), f('key', [B, L, D], 2), f('value', [B, L, Dv], 2), f('bias', [2 * D + Dv], 0.5), o.mask ?? '', o.attnBias ?? '', ...past];
  return { op: 'MultiHeadAttention', inputs, attrs: { num_heads: N, ...o.attrs }, outputs: 3 };
}

const mhaCases: [string, OpCase][] = [
  ['self-attention with a 2-D key padding mask', mhaCase({ mask: i32('key_padding_mask', [2, 4], [1, 1, 1, 1, 0, 1, 1, 1]) })],
  ['cross-attention (L 6 ≠ S 3), value width 4, 1-D key lengths', mhaCase({ S: 3, L: 6, Dv: 4, mask: i32('key_padding_mask', [2], [6, 4]) })],
  ['past of 2 and attention_bias, scale', mhaCase({ P: 2, attnBias: f('attention_bias', [2, 1, 4, 6], 1), attrs: { scale: float(0.5) } })],
  ['unidirectional', mhaCase({ attrs: { unidirectional: 1 } })],
  ['unidirectional with a left-padded key padding mask', mhaCase({ mask: i32('key_padding_mask', [2, 4], [1, 1, 1, 1, 0, 0, 1, 1]), attrs: { unidirectional: 1 } })],
  ['unidirectional, padding mask, mask_filter_value −1e9', mhaCase({ mask: i32('key_padding_mask', [2, 4], [0, 1, 1, 1, 0, 0, 0, 1]), attrs: { unidirectional: 1, mask_filter_value: float(-1e9) } })],
];
for (let k = 0; k < 3; k++) {
  const S = 1 + Math.floor(r() * 6);
  const L = 1 + Math.floor(r() * 6);
  const lengths = [1 + Math.floor(r() * L), 1 + Math.floor(r() * L)];
  mhaCases.push([`random shape #${k} (S ${S}, L ${L}, key lengths ${lengths})`, mhaCase({ S, L, mask: i32('key_padding_mask', [2], lengths) })]);
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

test.run();
