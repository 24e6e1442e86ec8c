/**
 * com.microsoft Attention and MultiHeadAttention as standard ops (semantics from ONNX Runtime's
 * ContribOperators.md, checked against its CPU kernel in test/onnx/backward/decompose-attention.test.ts).
 *
 *   Attention(input [B,S,in], weights [in, Dq+Dk+Dv], bias?, mask_index?, past? [2,B,N,P,H], attention_bias?)
 *     q|k|v = input·weights + bias, split at qkv_hidden_sizes (default three equal parts)
 *   MultiHeadAttention(query [B,S,D], key [B,L,D], value [B,L,Dv], bias?, key_padding_mask?,
 *                      attention_bias?, past_key? [B,N,P,H], past_value?)
 * Both: heads split (BNSH), keys/values appended to the past, scores = scale·q·kᵀ (scale 0 →
 * 1/√H) + attention_bias + m with m = 0 where attending is allowed, mask_filter_value at keys the
 * mask pads, and float32's lowest at keys after the query's absolute position P + s (with
 * unidirectional=1), softmax, · v, heads merged. present outputs are not reproduced.
 * MultiHeadAttention's key/value may also be BNSH [B, N, L, H] (already projected: no bias added).
 * Masks: 1-D [B] (each row's key length), [2·B] (ends, then starts) or [3·B + 2] (ORT's
 * CPU kernels read its first B entries as key lengths), 2-D [B, L] and 3-D
 * [B, S, L] (1 = attend). What ORT's CPU kernel does not implement (packed q/k/v, 4-D masks,
 * rotary inside Attention) and shared past buffers are refused with "not supported".
 */
import type { GradEmitter } from './emitter.ts';
import { attrFloat, attrInt, attrInts, gradError, optionalInput } from './rule.ts';
import { afterPast, attend, attentionScale, causalMask, dim, MASKED_SCORE, mergeHeads, range, splitHeads } from './decompose-attention-core.ts';
import type { Decomposition } from './decomposition.ts';
import type { NodeInfo } from '../model-reader.ts';

/**
 * A 1-D mask as bool [B, 1, 1, L]: [B] key lengths (keys j < end_b), [2·B] ends then starts
 * (start_b ≤ j < end_b, left padding), or [3·B + 2] (key lengths first). Other lengths are refused.
 */
function lengthMask(e: GradEmitter, node: NodeInfo, mask: string, m64: string, L: string): string {
  const batch = e.meta(node.inputs[0]).shape[0];
  const n = e.meta(mask).shape[0];
  const j = e.unsqueeze(range(e, L), [0]); // [1, L]
  const B = dim(e, node.inputs[0], 0);
  const part = (from: string, to: string) => e.unsqueeze(e.op1('Slice', [m64, e.unsqueeze(from, [0]), e.unsqueeze(to, [0]), e.i64([0])]), [1]); // [B, 1]
  const zero = e.i64([0], []);
  // The [3·B + 2] form (key lengths, then query/key start offsets of packed batches): ORT's CPU kernels read only the first B entries.
  const keyLengths = n === batch || n === 3 * batch + 2;
  if (keyLengths) return e.unsqueeze(e.op1('Less', [j, part(zero, B)]), [1, 2]);
  if (n !== 2 * batch) throw gradError(node, `not supported: a 1-D mask of ${n} entries for a batch of ${batch} in the decomposition (batch key lengths, or 2·batch ends and starts, are)`);
  const inside = e.op1('And', [e.op1('Less', [j, part(zero, B)]), e.op1('Not', [e.op1('Less', [j, part(B, e.op1('Add', [B, B]))])])]);
  return e.unsqueeze(inside, [1, 2]);
}

/** Additive mask m broadcasting to [B, 1, S, L] (or null when nothing is masked). */
function additiveMask(e: GradEmitter, node: NodeInfo, mask: string | undefined, S: string, L: string, past: string, type: string): string | null {
  let allowed: string | null = null;
  const and = (x: string) => (allowed = allowed ? e.op1('And', [allowed, x]) : x);
  if (mask) {
    const rank = e.rank(mask);
    const m64 = e.op1('Cast', [mask], { to: 7 });
    if (rank === 1) and(lengthMask(e, node, mask, m64, L));
    else if (rank === 2) and(e.unsqueeze(e.op1('Greater', [m64, e.i64([0], [])]), [1, 2]));
    else if (rank === 3) and(e.unsqueeze(e.op1('Greater', [m64, e.i64([0], [])]), [1]));
    else throw gradError(node, `not supported: a ${rank}-D mask in the decomposition (1-D lengths, 2-D and 3-D masks are)`);
  }
  // Padding adds mask_filter_value; keys after the query (unidirectional) get float32's lowest
  // instead, whatever mask_filter_value is (as ORT's CPU kernel does: checked in the tests).
  const filter = attrFloat(node, 'mask_filter_value', -10000);
  const padding = allowed ? e.op1('Where', [allowed, e.scalar(0, type), e.scalar(filter, type)]) : null;
  if (attrInt(node, 'unidirectional', 0) !== 1) return padding;
  return e.op1('Where', [causalMask(e, S, L, past), padding ?? e.scalar(0, type), e.scalar(MASKED_SCORE, type)]);
}

const attention: Decomposition = ({ node, e }) => {
  if (attrInt(node, 'do_rotary', 0) === 1) throw gradError(node, 'not supported: do_rotary=1 in the decomposition');
  if (attrInt(node, 'past_present_share_buffer', 0) === 1 || optionalInput(node, 6)) throw gradError(node, 'not supported: a shared past/present buffer in the decomposition');
  const N = attrInt(node, 'num_heads', 0);
  const [input, weights] = node.inputs;
  const type = e.meta(input).type;
  const total = e.meta(weights).shape[1];
  const sizes = attrInts(node, 'qkv_hidden_sizes') ?? [total / 3, total / 3, total / 3];
  const [Hq, Hv] = [sizes[0] / N, sizes[2] / N];
  if (sizes[0] !== sizes[1] || !Number.isInteger(Hq) || !Number.isInteger(Hv)) throw gradError(node, `qkv_hidden_sizes ${sizes} do not split into ${N} heads`);
  let qkv = e.op1('MatMul', [input, weights]);
  const bias = optionalInput(node, 2);
  if (bias) qkv = e.op1('Add', [qkv, bias]);
  const [q3, k3, v3] = e.split(qkv, 2, sizes);
  const q = splitHeads(e, q3, N, Hq);
  // past [2, B, N, P, H]: past keys, then past values.
  const pastIn = optionalInput(node, 4);
  const [pk, pv] = pastIn ? e.split(pastIn, 0, [1, 1]).map((p) => e.squeeze(p, [0])) : [undefined, undefined];
  const { k, v, past } = afterPast(e, splitHeads(e, k3, N, Hq), splitHeads(e, v3, N, Hv), pk, pv);
  const mask = additiveMask(e, node, optionalInput(node, 3), dim(e, q, 2), dim(e, k, 2), past, type);
  const attentionBias = optionalInput(node, 5);
  const biasSum = mask && attentionBias ? e.op1('Add', [mask, attentionBias]) : (mask ?? attentionBias ?? null);
  const out = attend(e, q, k, v, { scale: attentionScale(node, Hq), allowed: null, bias: biasSum, type });
  return [mergeHeads(e, out, N, Hv), null];
};

const multiHeadAttention: Decomposition = ({ node, e }) => {
  const N = attrInt(node, 'num_heads', 0);
  const [query, key, value] = node.inputs;
  const bnsh = key && value && e.rank(key) === 4 && e.rank(value) === 4;
  if (!key || !value || e.rank(query) !== 3 || (!bnsh && (e.rank(key) !== 3 || e.rank(value) !== 3))) {
    throw gradError(node, 'not supported: packed query/key/value in the decomposition (3-D query with 3-D or BNSH key and value are; ORT\'s CPU kernel has no packed forms)');
  }
  // past_sequence_length (input 8) does not change the output of ORT's CPU kernel (checked in the tests).
  if (optionalInput(node, 9)) throw gradError(node, 'not supported: input 9 (cache_indirection) in the decomposition');
  const type = e.meta(query).type;
  const D = e.meta(query).shape[2];
  const Dv = bnsh ? N * e.meta(value).shape[3] : e.meta(value).shape[2];
  let [q3, k3, v3] = [query, key, value];
  const bias = optionalInput(node, 3);
  if (bias) {
    const [bq, bk, bv] = e.split(bias, 0, [D, D, Dv]);
    q3 = e.op1('Add', [q3, bq]);
    // BNSH key/value are already projected (a cross-attention cache): ORT adds no bias to them.
    if (!bnsh) [k3, v3] = [e.op1('Add', [k3, bk]), e.op1('Add', [v3, bv])];
  }
  const q = splitHeads(e, q3, N, D / N);
  const [k0, v0] = bnsh ? [k3, v3] : [splitHeads(e, k3, N, D / N), splitHeads(e, v3, N, Dv / N)];
  const { k, v, past } = afterPast(e, k0, v0, optionalInput(node, 6), optionalInput(node, 7));
  const mask = additiveMask(e, node, optionalInput(node, 4), dim(e, q, 2), dim(e, k, 2), past, type);
  const attentionBias = optionalInput(node, 5);
  const biasSum = mask && attentionBias ? e.op1('Add', [mask, attentionBias]) : (mask ?? attentionBias ?? null);
  const out = attend(e, q, k, v, { scale: attentionScale(node, D / N), allowed: null, bias: biasSum, type });
  return [mergeHeads(e, out, N, Dv / N), null, null];
};

export const ATTENTION_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:Attention': attention,
  'com.microsoft:MultiHeadAttention': multiHeadAttention,
};
