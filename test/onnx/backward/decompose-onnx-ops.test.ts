/**
 * The ai.onnx ops newer exporters emit in place of the com.microsoft ones: Attention (opsets 23
 * and 24: 3-D and 4-D layouts, grouped kv heads, past, float and bool masks, is_causal, softcap,
 * scale, nonpad_kv_seqlen), RotaryEmbedding (23: 3-D and 4-D, tables gathered by position_ids or
 * given per position, interleaved, partial) and RMSNormalization (23). Each decomposition ==
 * ORT's kernel on fixed and random shapes, then gradients == central differences in a model.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float, type AttrInput, type GraphBuilder } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import type { Helpers } from './fd-harness.ts';
import { compareWithKernel, randomValues, type InputSpec, type OpCase } from './kernel-harness.ts';

const r = mulberry32(29);
const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T,>(xs: T[]) => xs[Math.floor(r() * xs.length)];
const f = (name: string, dims: number[], scale = 2): InputSpec => ({ name, type: 'float32', dims, data: randomValues(r, dims.reduce((a, b) => a * b, 1), scale) });

interface AttentionCase {
  B: number;
  S: number;
  L: number;
  qN: number;
  kvN: number;
  H: number;
  Hv: number;
  P?: number;
  rank3?: boolean;
  mask?: 'float' | 'bool' | 'float-2d';
  nonpad?: number[];
  attrs?: Record<string, AttrInput>;
}

function attentionCase(c: AttentionCase): OpCase {
  const P = c.P ?? 0;
  const T = P + c.L;
  const x = (name: string, n: number, len: number, w: number) => (c.rank3 ? f(name, [c.B, len, n * w]) : f(name, [c.B, n, len, w]));
  const mask = (): InputSpec | '' => {
    if (c.mask === 'float') return f('attn_mask', [c.B, 1, c.S, T], 3);
    if (c.mask === 'float-2d') return f('attn_mask', [c.S, T], 3);
    // Every query keeps at least key 0 (a row with no key left is undefined).
    if (c.mask === 'bool') return { name: 'attn_mask', type: 'bool', dims: [c.B, c.qN, c.S, T], data: Array.from({ length: c.B * c.qN * c.S * T }, (_, i) => (i % T === 0 || r() < 0.6 ? 1 : 0)) };
    return '';
  };
  const inputs: (InputSpec | '')[] = [x('Q', c.qN, c.S, c.H), x('K', c.kvN, c.L, c.H), x('V', c.kvN, c.L, c.Hv), mask()];
  if (P) inputs.push(f('past_key', [c.B, c.kvN, P, c.H]), f('past_value', [c.B, c.kvN, P, c.Hv]));
  if (c.nonpad) inputs.push(...(P ? [] : ['' as const, '' as const]), { name: 'nonpad_kv_seqlen', type: 'int64', dims: [c.B], data: c.nonpad });
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const attrs = { ...(c.rank3 ? { q_num_heads: c.qN, kv_num_heads: c.kvN } : {}), ...c.attrs };
  return { op: 'Attention', domain: '', opset: c.nonpad ? 24 : 23, inputs, attrs, outputs: 3 };
}

const attentionCases: [string, AttentionCase][] = [
  ['4-D, 2 heads, cross-attention', { B: 2, S: 3, L: 5, qN: 2, kvN: 2, H: 4, Hv: 6 }],
  ['4-D, grouped kv heads 4/2', { B: 2, S: 3, L: 5, qN: 4, kvN: 2, H: 4, Hv: 4 }],
  ['3-D with q_num_heads/kv_num_heads, grouped', { B: 2, S: 3, L: 5, qN: 4, kvN: 2, H: 4, Hv: 3, rank3: true }],
  ['is_causal, self-attention', { B: 2, S: 4, L: 4, qN: 2, kvN: 1, H: 4, Hv: 4, attrs: { is_causal: 1 } }],
  ['is_causal with a past of 2', { B: 2, S: 3, L: 3, qN: 2, kvN: 2, H: 4, Hv: 4, P: 2, attrs: { is_causal: 1 } }],
  ['is_causal cross-attention, 3 queries over 5 keys (aligned to the start)', { B: 2, S: 3, L: 5, qN: 2, kvN: 2, H: 4, Hv: 4, attrs: { is_causal: 1 } }],
  ['is_causal cross-attention, 5 queries over 3 keys', { B: 2, S: 5, L: 3, qN: 2, kvN: 1, H: 4, Hv: 4, attrs: { is_causal: 1 } }],
  ['opset 24 is_causal, nonpad_kv_seqlen, 3 queries over 5 keys (aligned to each row\'s end; rows with no key give 0)', { B: 3, S: 3, L: 5, qN: 2, kvN: 1, H: 4, Hv: 4, nonpad: [5, 3, 1], attrs: { is_causal: 1 } }],
  ['float mask [B, 1, S, T]', { B: 2, S: 3, L: 5, qN: 2, kvN: 2, H: 4, Hv: 4, mask: 'float' }],
  ['float mask [S, T], scale', { B: 2, S: 3, L: 5, qN: 2, kvN: 2, H: 4, Hv: 4, mask: 'float-2d', attrs: { scale: float(0.3) } }],
  ['bool mask [B, qN, S, T], causal, past', { B: 2, S: 3, L: 3, qN: 2, kvN: 1, H: 4, Hv: 4, P: 2, mask: 'bool', attrs: { is_causal: 1 } }],
  ['softcap and a float mask (the mask is added after the softcap)', { B: 2, S: 3, L: 5, qN: 2, kvN: 2, H: 4, Hv: 4, mask: 'float', attrs: { softcap: float(1.5) } }],
  ['opset 24 nonpad_kv_seqlen', { B: 2, S: 3, L: 5, qN: 2, kvN: 2, H: 4, Hv: 4, nonpad: [5, 3] }],
  ['opset 24 nonpad_kv_seqlen with is_causal (ORT refuses it with a past)', { B: 2, S: 4, L: 4, qN: 2, kvN: 1, H: 4, Hv: 4, nonpad: [4, 2], attrs: { is_causal: 1 } }],
];
// Random shapes: batch, lengths, past, heads and grouping, head sizes, layout, mask, flags drawn.
for (let k = 0; k < 10; k++) {
  const self = r() < 0.5;
  const S = int(1, 6);
  const L = self ? S : int(1, 6);
  const P = self && r() < 0.5 ? int(1, 4) : 0;
  const kvN = int(1, 2);
  const c: AttentionCase = {
    B: int(1, 3), S, L, P, kvN, qN: kvN * pick([1, 2, 3]), H: pick([2, 4, 8]), Hv: pick([2, 4, 8]), rank3: r() < 0.5,
    mask: pick([undefined, 'float', 'bool', 'float-2d'] as const),
    attrs: { is_causal: r() < 0.5 ? 1 : 0, ...(r() < 0.3 ? { softcap: float(2) } : {}), ...(r() < 0.3 ? { scale: float(0.2 + r()) } : {}) },
  };
  if (!P && r() < 0.3) c.nonpad = Array.from({ length: c.B }, () => int(1, L));
  if (c.P) c.Hv = c.H; // the kernel wants past_value's width = the key width here
  attentionCases.push([`random #${k} (${JSON.stringify(c).replace(/"/g, '')})`, c]);
}
for (const [name, c] of attentionCases) {
  test(`Attention (ai.onnx) ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(attentionCase(c));
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

function rotaryCase(dims: number[], withIds: boolean, half: number, attrs: Record<string, AttrInput>): OpCase {
  const [B, S] = dims.length === 3 ? [dims[0], dims[1]] : [dims[0], dims[2]];
  const table = (name: string, fn: (a: number) => number): InputSpec => {
    const rows = withIds ? 16 : B * S;
    const data = Array.from({ length: rows * half }, (_, i) => fn((i / half | 0) * Math.pow(10000, -(i % half) / half) + (withIds ? 0 : r())));
    return { name, type: 'float32', dims: withIds ? [16, half] : [B, S, half], data };
  };
  const ids: InputSpec | '' = withIds ? { name: 'position_ids', type: 'int64', dims: [B, S], data: Array.from({ length: B * S }, () => int(0, 15)) } : '';
  return { op: 'RotaryEmbedding', domain: '', opset: 23, inputs: [f('X', dims), table('cos_cache', Math.cos), table('sin_cache', Math.sin), ids], attrs, outputs: 1 };
}

const rotaryCases: [string, OpCase][] = [
  ['4-D [B, N, S, H] with position_ids', rotaryCase([2, 3, 4, 8], true, 4, {})],
  ['3-D with num_heads, interleaved', rotaryCase([2, 4, 24], true, 4, { num_heads: 3, interleaved: 1 })],
  ['4-D, partial rotary (4 of 8 dims), tables per position', rotaryCase([2, 2, 5, 8], false, 2, { rotary_embedding_dim: 4 })],
];
for (let k = 0; k < 5; k++) {
  const [B, S, N, half] = [int(1, 3), int(1, 6), int(1, 3), int(1, 4)];
  const H = 2 * half * pick([1, 2]);
  const rank3 = r() < 0.5;
  const partial = H > 2 * half;
  const attrs = { interleaved: int(0, 1), ...(rank3 ? { num_heads: N } : {}), ...(partial ? { rotary_embedding_dim: 2 * half } : {}) };
  const withIds = r() < 0.5;
  rotaryCases.push([`random #${k} (B ${B}, S ${S}, ${N} heads of ${H}, rotary ${2 * half}, ${rank3 ? '3-D' : '4-D'}, ids ${withIds})`, rotaryCase(rank3 ? [B, S, N * H] : [B, N, S, H], withIds, half, attrs)]);
}
for (let k = 0; k < 4; k++) {
  const [B, S, W] = [int(1, 3), int(1, 5), int(1, 12)];
  const axis = int(1, 2);
  rotaryCases.push([`RMSNormalization random #${k} ([${B}, ${S}, ${W}], axis ${axis})`, { op: 'RMSNormalization', domain: '', opset: 23, inputs: [f('X', [B, S, W], 3), f('scale', axis === 1 ? [S, W] : [W])], attrs: { axis, epsilon: float(1e-5) }, outputs: 1 }]);
}
for (const [name, c] of rotaryCases) {
  test(`${c.op} (ai.onnx) ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(c);
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

const o23 = { opset: 23 };
/** [B,T,6] → [B, 3 heads, T, 2] through a projection (and Tanh). */
function bnsh(g: GraphBuilder, act: string, h: Helpers, tanh = true): string {
  const [p] = g.node('MatMul', [act, h.rand([6, 6])]);
  const x = tanh ? g.node('Tanh', [p])[0] : p;
  return g.node('Transpose', [g.node('Reshape', [x, h.i64([0, 0, 3, 2])])[0]], 1, { perm: [0, 2, 1, 3] })[0];
}
check('Attention (ai.onnx, 3-D, grouped kv heads 2/1), is_causal with a past from the activation, softcap', 'Attention', (g, act, h) => {
  const kv = (n: number) => g.node('MatMul', [act, h.rand([6, n])])[0];
  const past = (n: number) => g.node('Unsqueeze', [g.node('Tanh', [kv(n)])[0], h.i64([1])])[0]; // [B, 1, T, n]
  const [y] = g.node('Attention', [act, kv(3), kv(4), '', past(3), past(4)], 3, { q_num_heads: 2, kv_num_heads: 1, is_causal: 1, softcap: float(2) });
  return { out: y, k: 8 };
}, o23);
check('Attention (ai.onnx, 4-D) with a float mask from the activation', 'Attention', (g, act, h) => {
  const [a1] = g.node('MatMul', [act, h.rand([6, 4])]);
  const [a2] = g.node('Tanh', [g.node('MatMul', [act, h.rand([6, 4])])[0]]);
  const [mask] = g.node('Unsqueeze', [g.node('MatMul', [a1, g.node('Transpose', [a2], 1, { perm: [0, 2, 1] })[0]])[0], h.i64([1])]);
  const [y] = g.node('Attention', [bnsh(g, act, h, false), bnsh(g, act, h), bnsh(g, act, h), mask], 3, {});
  return { out: g.node('Reshape', [g.node('Transpose', [y], 1, { perm: [0, 2, 1, 3] })[0], h.i64([0, 0, 6])])[0], k: 6 };
}, o23);
check('RotaryEmbedding (ai.onnx, 3-D, 3 heads of 2, position_ids)', 'RotaryEmbedding', (g, act, h) => {
  const [y] = g.node('RotaryEmbedding', [act, h.rand([16, 1]), h.rand([16, 1]), 'input_ids'], 1, { num_heads: 3 });
  return { out: g.node('Mul', [y, y])[0], k: 6 };
}, o23);
check('RMSNormalization (ai.onnx) with a scale from the activation', 'RMSNormalization', (g, act, h) => {
  const [scale] = g.node('ReduceMean', [g.node('Tanh', [act])[0], h.i64([0, 1])], 1, { keepdims: 0 });
  return { out: g.node('RMSNormalization', [g.node('Mul', [act, act])[0], scale], 1, { epsilon: float(1e-5) })[0], k: 6 };
}, o23);

test.run();
