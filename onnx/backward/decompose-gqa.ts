/**
 * com.microsoft GroupQueryAttention as standard ops, for the prompt pass the attribution graph
 * runs (empty or dense past). Inputs: query [B,S,N·H] (or packed q|k|v [B,S,(N+2K)·H] when key and
 * value are omitted), key/value [B,S,K·H], past_key/past_value [B,K,P,H], seqlens_k int32 [B]
 * (each row's total length − 1), total_sequence_length, cos_cache/sin_cache [max, R/2].
 *
 *   q, k, v  split into heads (BNSH); with do_rotary, q and k rotated at positions P + s
 *            (P = past length; rows' real tokens first, as ORT assumes)
 *   keys     concat(past, k): [B, K, P+S, H]; query head h reads kv head ⌊h·K/N⌋
 *   scores   scale·q·kᵀ (scale 0 → 1/√H), optional softcap, masked to keys j ≤ P + s and
 *            j < seqlens_k[b] + 1 (and, with local_window_size w > 0, j ≥ P + s − w)
 *   output   softmax · v, heads merged: [B, S, N·H]. present_key/value are not reproduced (the
 *            objective never reads them).
 * ORT computes nothing meaningful for a query past its row's length (right padding); the
 * decomposition gives such rows the same masked attention over that row's real keys.
 */
import { gradError, attrFloat, attrInt, optionalInput } from './rule.ts';
import { attend, causalMask, dim, expandKvHeads, range, rotate, splitHeads } from './decompose-attention-core.ts';
import type { DecomposeContext, Decomposition } from './decomposition.ts';

function refuseUnsupported(d: DecomposeContext): void {
  const { node } = d;
  if (attrInt(node, 'smooth_softmax', 0) === 1) throw gradError(node, 'not supported: smooth_softmax=1 in the decomposition');
  for (const [i, what] of [[10, 'attention_bias'], [11, 'head_sink']] as const) {
    if (optionalInput(node, i)) throw gradError(node, `not supported: input ${i} (${what}) in the decomposition`);
  }
}

/** Rotary cos/sin rows for positions P + s (or the given position_ids), shaped to broadcast over BNSH. */
function rotaryTables(d: DecomposeContext, S: string, past: string): { cos: string; sin: string } {
  const { node, e } = d;
  const ids = optionalInput(node, 9);
  const gatherAt = (cache: string) => {
    if (ids) return e.unsqueeze(e.op1('Gather', [cache, ids], { axis: 0 }), [1]); // [B,1,S,R/2]
    return e.unsqueeze(e.op1('Gather', [cache, range(e, S, past)], { axis: 0 }), [0, 1]); // [1,1,S,R/2]
  };
  return { cos: gatherAt(node.inputs[7]), sin: gatherAt(node.inputs[8]) };
}

const groupQueryAttention: Decomposition = (d) => {
  const { node, e } = d;
  refuseUnsupported(d);
  const N = attrInt(node, 'num_heads', 0);
  const K = attrInt(node, 'kv_num_heads', 0);
  const query = node.inputs[0];
  const type = e.meta(query).type;
  const packed = !optionalInput(node, 1);
  const D = e.meta(query).shape[2];
  const H = packed ? D / (N + 2 * K) : D / N;
  if (!Number.isInteger(H) || N % K !== 0) throw gradError(node, `hidden size ${D} does not split into ${N} query and ${K} kv heads`);
  let q: string, k: string, v: string;
  if (packed) {
    const heads = splitHeads(e, query, N + 2 * K, H);
    [q, k, v] = e.split(heads, 1, [N, K, K]);
  } else {
    [q, k, v] = [splitHeads(e, query, N, H), splitHeads(e, node.inputs[1], K, H), splitHeads(e, node.inputs[2], K, H)];
  }
  const pastKey = optionalInput(node, 3);
  const pastValue = optionalInput(node, 4);
  const S = dim(e, q, 2);
  const past = pastKey ? dim(e, pastKey, 2) : e.i64([0], []);
  if (attrInt(node, 'do_rotary', 0) === 1) {
    const R = 2 * e.meta(node.inputs[7]).shape[1];
    const { cos, sin } = rotaryTables(d, S, past);
    const inter = attrInt(node, 'rotary_interleaved', 0) === 1;
    q = rotate(e, q, cos, sin, R, H, inter);
    k = rotate(e, k, cos, sin, R, H, inter);
  }
  if (pastKey) k = e.op1('Concat', [pastKey, k], { axis: 2 });
  if (pastValue) v = e.op1('Concat', [pastValue, v], { axis: 2 });
  const L = dim(e, k, 2);
  let allowed = causalMask(e, S, L, past); // [S, L]
  const window = attrInt(node, 'local_window_size', -1);
  if (window > 0) {
    const j = e.unsqueeze(range(e, L), [0]);
    const lo = e.unsqueeze(e.op1('Sub', [range(e, S, past), e.i64([window - 1], [])]), [1]);
    allowed = e.op1('And', [allowed, e.op1('Not', [e.op1('Less', [j, lo])])]);
  }
  const total = e.op1('Add', [e.op1('Cast', [node.inputs[5]], { to: 7 }), e.i64([1])]); // [B]
  const keyOk = e.op1('Less', [e.unsqueeze(range(e, L), [0]), e.unsqueeze(total, [1])]); // [B, L]
  allowed = e.op1('And', [e.unsqueeze(allowed, [0, 1]), e.unsqueeze(keyOk, [1, 2])]); // [B,1,S,L]
  const scale = attrFloat(node, 'scale', 0) || 1 / Math.sqrt(H);
  const out = attend(e, q, expandKvHeads(e, k, N, K, H), expandKvHeads(e, v, N, K, H), { scale, allowed, softcap: attrFloat(node, 'softcap', 0), type });
  const merged = e.op1('Reshape', [e.op1('Transpose', [out], { perm: [0, 2, 1, 3] }), e.i64([0, 0, N * H])]);
  return [merged, null, null];
};

export const GQA_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:GroupQueryAttention': groupQueryAttention,
};
