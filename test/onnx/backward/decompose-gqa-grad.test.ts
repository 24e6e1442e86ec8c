/**
 * GroupQueryAttention gradients through its decomposition == central differences inside a model
 * (fd-harness.ts: every coordinate of an activation [3, 4, 6] feeding the node): packed q|k|v with
 * rotary and GQA heads, padded rows, softcap, smooth_softmax with a local window and an
 * attention_bias that depends on the activation, head_sink that depends on it, and padded
 * decoding whose per-row pasts are computed from it (the gradient reaches the past entries each
 * row reads and none of those it ignores). Forward equality with ORT: decompose-gqa.test.ts.
 * A quantized KV cache is refused in one line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { float, type AttrInput, type GraphBuilder } from '../../../onnx/builder.ts';
import { check } from './check.ts';
import { syntheticModel, tensor, type Helpers } from './fd-harness.ts';
import { buildAttributionGraph } from '../../../onnx/backward/graph.ts';
import { readOnnxModel } from '../../../onnx/model-reader.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { rotaryCaches } from './gqa-cases.ts';

const msDomain = { domain: 'com.microsoft' };

/** Int64 scalars B and T of act, and T − 1. */
function sizes(g: GraphBuilder, act: string, h: Helpers) {
  const [shape] = g.node('Shape', [act]);
  const [B] = g.node('Gather', [shape, h.i64([0], [])], 1, { axis: 0 });
  const [T] = g.node('Gather', [shape, h.i64([1], [])], 1, { axis: 0 });
  return { B, T, last: g.node('Sub', [T, h.i64([1], [])])[0] };
}

/** Per-row lengths [B] int64: `full` for even rows, full − 1 for odd rows when padded. */
function rowLengths(g: GraphBuilder, h: Helpers, B: string, full: string, padded: boolean): string {
  const [rows] = g.node('Range', [h.i64([0], []), B, h.i64([1], [])]);
  const [odd] = g.node('Mod', [rows, h.i64([2], [])]);
  const [fullB] = g.node('Expand', [full, g.node('Unsqueeze', [B, h.i64([0])])[0]]);
  return padded ? g.node('Sub', [fullB, odd])[0] : fullB;
}

const int32 = (g: GraphBuilder, x: string) => g.node('Cast', [x], 1, { to: 6 })[0];
const caches = (h: Helpers) => {
  const [cos, sin] = rotaryCaches(16, 8);
  return [h.f32(cos, [16, 8]), h.f32(sin, [16, 8])];
};

interface Extras {
  /** attention_bias [B, 1, T, T] computed from act. */
  bias?: boolean;
  /** head_sink [2] computed from act. */
  sink?: boolean;
  /** k_scale / v_scale inputs (a quantized KV cache). */
  kvScales?: boolean;
}

/**
 * act [B,T,6] → qkv projection → GroupQueryAttention on the first prompt (2 query heads, 1 kv
 * head, H 16, rotary) → [B,T,32]. With `padded`, odd rows have one token less (seqlens_k = T − 2).
 */
function promptBody(padded: boolean, attrs: Record<string, AttrInput>, x: Extras = {}) {
  return (g: GraphBuilder, act: string, h: Helpers) => {
    const [qkv] = g.node('MatMul', [act, h.rand([6, 64], 0.8)]);
    const { B, T, last } = sizes(g, act, h);
    const seqlens = int32(g, rowLengths(g, h, B, last, padded));
    const total = int32(g, g.node('Unsqueeze', [T, h.i64([0])])[0]);
    const inputs = [qkv, '', '', '', '', seqlens, total, ...caches(h)];
    if (x.kvScales) {
      // An empty int8 past [B, 1, 0, 16] (a quantized cache's type).
      const dims = g.node('Concat', [g.node('Unsqueeze', [B, h.i64([0])])[0], h.i64([1, 0, 16])], 1, { axis: 0 })[0];
      const [empty] = g.node('ConstantOfShape', [dims], 1, { value: { kind: 'tensor', v: tensor('int8', [1], new Int8Array(1)) } });
      inputs[3] = inputs[4] = empty;
    }
    if (x.bias || x.sink) inputs.push('');
    if (x.bias || x.sink) {
      const [a1] = g.node('MatMul', [act, h.rand([6, 4])]);
      const [a2] = g.node('Tanh', [g.node('MatMul', [act, h.rand([6, 4])])[0]]);
      inputs.push(x.bias ? g.node('Unsqueeze', [g.node('MatMul', [a1, g.node('Transpose', [a2], 1, { perm: [0, 2, 1] })[0]])[0], h.i64([1])])[0] : '');
    }
    if (x.sink) inputs.push(g.node('ReduceMean', [g.node('MatMul', [act, h.rand([6, 2], 2)])[0]], 1, { axes: [0, 1], keepdims: 0 })[0]);
    if (x.kvScales) inputs.push('', '', '', h.f32([0.05], [1]), h.f32([0.05], [1]));
    const [y] = g.node('GroupQueryAttention', inputs, 3, { num_heads: 2, kv_num_heads: 1, do_rotary: 1, ...attrs }, msDomain);
    return { out: y, k: 32 };
  };
}

/**
 * Padded decoding: the last position of act is the new token; past key/value [B, 1, T−1, 16] are
 * projections of the positions before it. Even rows use their whole past (total T), odd rows all
 * but its last entry (total T − 1); position_ids (optional) put the new token 2 past its row's end.
 * The attention output [B,1,32] is added to a projection of act to give [B,T,32].
 */
function decodeBody(withIds: boolean, attrs: Record<string, AttrInput>) {
  return (g: GraphBuilder, act: string, h: Helpers) => {
    const [proj] = g.node('MatMul', [act, h.rand([6, 64], 0.8)]);
    const { B, T } = sizes(g, act, h);
    const slice = (x: string, s: number[], e: number[], axes: number[]) => g.node('Slice', [x, h.i64(s), h.i64(e), h.i64(axes)])[0];
    const query = slice(proj, [-1], [1 << 30], [1]); // [B, 1, 64]: packed q|k|v of the new token
    const pastOf = (from: number) => g.node('Transpose', [g.node('Reshape', [slice(proj, [0, from], [-1, from + 16], [1, 2]), h.i64([0, 0, 1, 16])])[0]], 1, { perm: [0, 2, 1, 3] })[0];
    const totals = rowLengths(g, h, B, T, true);
    const inputs = [query, '', '', pastOf(32), pastOf(48), int32(g, g.node('Sub', [totals, h.i64([1], [])])[0]), int32(g, g.node('Unsqueeze', [T, h.i64([0])])[0]), ...caches(h)];
    if (withIds) inputs.push(g.node('Unsqueeze', [g.node('Add', [totals, h.i64([1], [])])[0], h.i64([1])])[0]);
    const [y] = g.node('GroupQueryAttention', inputs, 3, { num_heads: 2, kv_num_heads: 1, do_rotary: 1, ...attrs }, msDomain);
    const [side] = g.node('Tanh', [g.node('MatMul', [act, h.rand([6, 32], 0.5)])[0]]);
    return { out: g.node('Add', [side, y])[0], k: 32 };
  };
}

const ms = { domains: { 'com.microsoft': 1 } };
check('GroupQueryAttention (packed, rotary, GQA heads)', 'GroupQueryAttention', promptBody(false, {}), ms);
check('GroupQueryAttention with padded rows', 'GroupQueryAttention', promptBody(true, {}), ms);
check('GroupQueryAttention with softcap and interleaved rotary', 'GroupQueryAttention', promptBody(true, { softcap: float(1.5), rotary_interleaved: 1 }), ms);
check('GroupQueryAttention with smooth_softmax, local window 2 and an attention_bias from the activation', 'GroupQueryAttention', promptBody(true, { smooth_softmax: 1, local_window_size: 2 }, { bias: true }), ms);
check('GroupQueryAttention with a head_sink from the activation, softcap', 'GroupQueryAttention', promptBody(true, { softcap: float(2) }, { sink: true }), ms);
check('GroupQueryAttention padded decoding, pasts from the activation', 'GroupQueryAttention', decodeBody(false, {}), ms);
check('GroupQueryAttention padded decoding with position_ids, smooth_softmax, local window 2', 'GroupQueryAttention', decodeBody(true, { smooth_softmax: 1, local_window_size: 2 }), ms);

test('a quantized KV cache is refused in one line naming the node and the attribute', async () => {
  const bytes = syntheticModel((g, act, h) => promptBody(false, { k_quant_type: 'PER_TENSOR', v_quant_type: 'PER_TENSOR', kv_cache_bit_width: 8 }, { kvScales: true })(g, act, h), 7, ms.domains);
  try {
    await buildAttributionGraph(readOnnxModel(bytes), { layerTensors: ['act'] });
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.match((e as Error).message, /^GroupQueryAttention \(node GroupQueryAttention_\d+\): not supported: k_quant_type=PER_TENSOR \(a quantized KV cache\)/);
    assert.not.match((e as Error).message, /\n/);
  }
});

test.run();
