/**
 * ai.onnx Attention (opsets 23 and 24, what torch.onnx and onnxscript's fusions emit) as standard
 * ops, as ONNX Runtime's CPU kernel computes it (checked in decompose-onnx-attention.test.ts):
 *
 *   Attention(Q, K, V, attn_mask?, past_key?, past_value?, nonpad_kv_seqlen? (24))
 *     Q [B, qN, S, H] or [B, S, qN·H]; K/V [B, kvN, L, H|Hv] or [B, L, kvN·H|Hv] (3-D with
 *     q_num_heads / kv_num_heads); keys/values appended to past_key/past_value [B, kvN, P, ·];
 *     query head h reads kv head ⌊h·kvN/qN⌋
 *   scores   scale·q·kᵀ (scale 0 → 1/√H), optional softcap, + attn_mask (float: added; bool:
 *            false = masked; ORT wants its last axis = all keys),
 *            keys j ≥ nonpad_kv_seqlen[b] masked, with is_causal keys after the query (see
 *            allowedKeys for the alignment); softmax; · v (0 for a query with no key left)
 *   output   [B, qN, S, Hv] (4-D inputs) or [B, S, qN·Hv]. present_key/value and the
 *            qk_matmul_output are not reproduced.
 */
import type { GradEmitter } from './emitter.ts';
import type { NodeInfo } from '../model-reader.ts';
import { attrFloat, attrInt, gradError, optionalInput } from './rule.ts';
import { afterPast, attend, attentionScale, dim, expandKvHeads, mergeHeads, range, splitHeads } from './decompose-attention-core.ts';
import type { Decomposition } from './decomposition.ts';

/** x in BNSH [B, heads, ·, width] and its head count (3-D inputs are split by the attribute). */
function heads(e: GradEmitter, node: NodeInfo, x: string, attr: string): { t: string; n: number; width: number } {
  const shape = e.meta(x).shape;
  if (shape.length === 4) return { t: x, n: shape[1], width: shape[3] };
  const n = attrInt(node, attr, 0);
  if (shape.length !== 3 || !n || shape[2] % n !== 0) throw gradError(node, `a ${shape.length}-D input "${x}" needs ${attr} dividing its last axis`);
  return { t: splitHeads(e, x, n, shape[2] / n), n, width: shape[2] / n };
}

/**
 * Which keys each query may read (bool broadcasting to [B, 1, S, T], null when all may) and which
 * queries read any key at all (null: all do; ORT outputs 0 for the others). Keys j ≥
 * nonpad_kv_seqlen[b] are masked. With is_causal query s reads keys j ≤ s + offset: offset = the
 * past length P, or with nonpad_kv_seqlen (which ORT allows only without a past) nonpad[b] − S.
 */
function allowedKeys(e: GradEmitter, node: NodeInfo, S: string, T: string, past: string): { allowed: string | null; rowOk: string | null } {
  const nonpad = optionalInput(node, 6);
  const j = e.unsqueeze(range(e, T), [0, 1]); // [1, 1, T]
  const lengths = nonpad ? e.unsqueeze(e.op1('Cast', [nonpad], { to: 7 }), [1, 2]) : null; // [B, 1, 1]
  let allowed = lengths ? e.op1('Less', [j, lengths]) : null;
  let rowOk: string | null = null;
  if (attrInt(node, 'is_causal', 0) === 1) {
    const offset = lengths ? e.op1('Sub', [lengths, S]) : past;
    const last = e.op1('Add', [e.unsqueeze(range(e, S), [0, 2]), offset]); // [B|1, S, 1]: the last key each query reads
    const causal = e.op1('Not', [e.op1('Greater', [j, last])]);
    allowed = allowed ? e.op1('And', [allowed, causal]) : causal;
    rowOk = e.unsqueeze(e.op1('Not', [e.op1('Less', [last, e.i64([0], [])])]), [1]);
  }
  return { allowed: allowed ? e.unsqueeze(allowed, [1]) : null, rowOk };
}

const onnxAttention: Decomposition = ({ node, e }) => {
  const [query, key, value] = node.inputs;
  const type = e.meta(query).type;
  const rank3 = e.rank(query) === 3;
  const q = heads(e, node, query, 'q_num_heads');
  const vh = heads(e, node, value, 'kv_num_heads');
  const kvN = vh.n;
  if (q.n % kvN !== 0) throw gradError(node, `${q.n} query heads do not group over ${kvN} kv heads`);
  const { k, v, past } = afterPast(e, heads(e, node, key, 'kv_num_heads').t, vh.t, optionalInput(node, 4), optionalInput(node, 5));
  const S = dim(e, q.t, 2);
  const T = dim(e, k, 2);
  const mask = optionalInput(node, 3);
  const keys = allowedKeys(e, node, S, T, past);
  let allowed = keys.allowed;
  let bias: string | null = null;
  if (mask && e.meta(mask).type === 'bool') allowed = allowed ? e.op1('And', [allowed, mask]) : mask;
  else if (mask) bias = mask;
  let out = attend(e, q.t, expandKvHeads(e, k, q.n, kvN, q.width), expandKvHeads(e, v, q.n, kvN, vh.width), {
    scale: attentionScale(node, q.width),
    allowed,
    bias,
    biasAfterSoftcap: true,
    softcap: attrFloat(node, 'softcap', 0),
    type,
  });
  if (keys.rowOk) out = e.op1('Where', [keys.rowOk, out, e.scalar(0, type)]);
  return [rank3 ? mergeHeads(e, out, q.n, vh.width) : out, null, null, null];
};

export const ONNX_ATTENTION_DECOMPOSITIONS: Record<string, Decomposition> = {
  Attention: onnxAttention,
};
