/**
 * GroupQueryAttention: the decomposition (onnx/backward/decompose-gqa.ts) equals ORT's kernel on
 * random inputs: packed and separate q/k/v, GQA head mapping, rotary full/partial/interleaved,
 * right padding through seqlens_k, the first prompt, padded decoding (each row its own past) and
 * a subsequent prompt, position_ids, attention_bias, softcap, scale, local window, smooth_softmax
 * and head_sink; plus random shapes drawing all of these, and float16. Gradients:
 * decompose-gqa-grad.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mulberry32 } from '../../../core/random.ts';
import { float } from '../../../onnx/builder.ts';
import { compareWithKernel } from './kernel-harness.ts';
import { gqaCase, randomGqaCase, type GqaCase } from './gqa-cases.ts';

const r = mulberry32(3);
const rot = { do_rotary: 1 };

// ORT's CPU kernel wants head_size % 16 == 0 with rotary and rotary half-dims a multiple of 8.
const cases: [string, GqaCase][] = [
  ['packed qkv, 4 query / 2 kv heads, rotary', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 5], attrs: rot }],
  ['right padding (seqlens_k [4, 2])', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 3], attrs: rot }],
  ['separate q/k/v, padding, no rotary', { B: 3, S: 4, N: 4, K: 1, H: 16, lengths: [4, 1, 3], packed: false }],
  ['interleaved rotary', { B: 2, S: 4, N: 4, K: 2, H: 16, lengths: [4, 2], attrs: { ...rot, rotary_interleaved: 1 } }],
  ['partial rotary (16 of 32 dims)', { B: 2, S: 4, N: 4, K: 2, H: 32, half: 8, lengths: [4, 4], attrs: rot }],
  ['scale and softcap', { B: 2, S: 4, N: 4, K: 2, H: 16, lengths: [4, 3], attrs: { ...rot, scale: float(0.3), softcap: float(2) } }],
  ['local window 3', { B: 2, S: 7, N: 2, K: 1, H: 16, lengths: [7, 5], attrs: { ...rot, local_window_size: 3 } }],
  ['subsequent prompt: dense past of 3, one row', { B: 1, S: 2, N: 4, K: 2, H: 16, lengths: [5], past: 3, attrs: rot }],
  ['decode step after a past of 3', { B: 2, S: 1, N: 4, K: 2, H: 16, lengths: [4, 4], past: 3, attrs: rot }],
  ['padded decode: rows of 4, 2 and 1 tokens, each its own past in a buffer of 3', { B: 3, S: 1, N: 4, K: 2, H: 16, lengths: [4, 2, 1], past: 3, attrs: rot }],
  ['padded decode with position_ids', { B: 2, S: 1, N: 2, K: 1, H: 16, lengths: [4, 2], past: 3, positionIds: [5, 9], attrs: rot }],
  ['subsequent prompt: row past 2 in a buffer of 5, position_ids', { B: 1, S: 3, N: 2, K: 2, H: 16, lengths: [5], past: 5, total: 8, positionIds: [4, 7, 8], attrs: rot }],
  ['first prompt: a non-empty past and position_ids are ignored', { B: 2, S: 4, N: 2, K: 1, H: 16, lengths: [4, 3], past: 2, total: 4, positionIds: [7, 8, 9, 10, 3, 4, 5, 6], attrs: rot }],
  ['empty past fed on the first prompt (onnxruntime-genai)', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 2], withPast: true, attrs: rot }],
  ['smooth_softmax', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 3], attrs: { ...rot, smooth_softmax: 1 } }],
  ['head_sink', { B: 2, S: 4, N: 4, K: 2, H: 16, lengths: [4, 2], headSink: [0.5, -1, 2, 0], attrs: rot }],
  ['head_sink with smooth_softmax (the sink wins)', { B: 2, S: 4, N: 2, K: 1, H: 16, lengths: [4, 4], headSink: [3, -2], attrs: { smooth_softmax: 1 } }],
  ['attention_bias [B, N, S, total]', { B: 2, S: 4, N: 4, K: 2, H: 16, lengths: [4, 3], bias: { batch: true, heads: true }, attrs: rot }],
  ['attention_bias [1, 1, S, total] with softcap', { B: 2, S: 4, N: 2, K: 1, H: 16, lengths: [4, 4], bias: { batch: false, heads: false }, attrs: { softcap: float(1.5) } }],
  ['attention_bias [B, 1, 1, total] in padded decoding', { B: 2, S: 1, N: 2, K: 1, H: 16, lengths: [5, 3], past: 4, bias: { batch: true, heads: false }, attrs: rot }],
  ['local window 2 in padded decoding, smooth_softmax', { B: 2, S: 1, N: 2, K: 1, H: 16, lengths: [6, 3], past: 5, attrs: { ...rot, local_window_size: 2, smooth_softmax: 1 } }],
  ['everything: bias, softcap, window, head_sink, interleaved rotary, subsequent prompt', { B: 1, S: 3, N: 4, K: 2, H: 16, lengths: [6], past: 4, total: 7, bias: { batch: true, heads: true }, headSink: [1, 0, -1, 2], attrs: { ...rot, rotary_interleaved: 1, softcap: float(3), local_window_size: 3 } }],
  // Queries past a row's length with a window: ORT's own quirks (see allowedKeys) are reproduced.
  ['local window 2, rows of 7, 4 and 2 of 7 positions', { B: 3, S: 7, N: 2, K: 1, H: 16, lengths: [7, 4, 2], attrs: { ...rot, local_window_size: 2 } }],
  ['local window 3, smooth_softmax, rows of 7, 4 and 2 of 7 positions', { B: 3, S: 7, N: 2, K: 1, H: 16, lengths: [7, 4, 2], attrs: { ...rot, local_window_size: 3, smooth_softmax: 1 } }],
  ['local window 2, head_sink, rows of 6 and 1 of 6 positions', { B: 2, S: 6, N: 2, K: 2, H: 16, lengths: [6, 1], headSink: [1, -0.5], attrs: { local_window_size: 2 } }],
];
for (let k = 0; k < 12; k++) {
  const [name, c] = randomGqaCase(r);
  cases.push([`random #${k} (${name})`, c]);
}
for (const [name, c] of cases) {
  test(`GroupQueryAttention ${name}: decomposition == ORT kernel (relative 1e-5)`, async () => {
    const { relErr } = await compareWithKernel(gqaCase(c, r));
    assert.is(relErr[1], null, 'present_key is not reproduced');
    assert.ok(relErr[0] !== null && relErr[0] <= 1e-5, `relative error ${relErr[0]}`);
  });
}

// float16 (onnxruntime-genai's fp16 exports): the same ops in half precision. Tolerance 2e-3 of
// the output's scale: a few float16 roundings (2^-11 ≈ 4.9e-4 each) between the two paths.
const fp16Cases: [string, GqaCase][] = [
  ['right padding, rotary', { B: 2, S: 5, N: 4, K: 2, H: 16, lengths: [5, 3], attrs: rot }],
  ['padded decoding, per-row pasts', { B: 2, S: 1, N: 2, K: 1, H: 16, lengths: [4, 2], past: 3, attrs: rot }],
  ['head_sink, attention_bias, softcap, local window', { B: 2, S: 4, N: 2, K: 1, H: 16, lengths: [4, 3], headSink: [1, -1], bias: { batch: true, heads: false }, attrs: { softcap: float(2), local_window_size: 2 } }],
];
for (const [name, c] of fp16Cases) {
  test(`GroupQueryAttention float16 ${name}: decomposition == ORT kernel (relative 2e-3)`, async () => {
    const f32 = gqaCase(c, r);
    const inputs = f32.inputs.map((x) => (x && x.type === 'float32' ? { ...x, type: 'float16' as const } : x));
    const { relErr } = await compareWithKernel({ ...f32, inputs });
    assert.ok(relErr[0] !== null && relErr[0] <= 2e-3, `relative error ${relErr[0]}`);
  });
}

test.run();
