/**
 * com.microsoft GroupQueryAttention as standard ops, as ONNX Runtime's CPU kernel computes it
 * (1.30; every feature checked against it in test/onnx/backward/decompose-gqa.test.ts). Inputs:
 * query [B,S,N·H] (or packed q|k|v [B,S,(N+2K)·H] when key and value are omitted), key/value
 * [B,S,K·H], past_key/past_value [B,K,P,H], seqlens_k int32 [B] (each row's total length − 1),
 * total_sequence_length, cos_cache/sin_cache [max, R/2], position_ids [B,S], attention_bias
 * [B|1, N|1, S, total], head_sink [N].
 *
 *   rows     total_b = seqlens_k[b] + 1; on the first prompt (S = total_sequence_length) each row
 *            has no past (past_b = 0, a past input is ignored), else past_b = total_b − S: row b's
 *            own past is the first past_b entries of past_key/value, its new tokens follow them
 *   q, k, v  split into heads (BNSH); with do_rotary, q and k rotated at positions past_b + s
 *            (position_ids instead, except on the first prompt, where ORT ignores them)
 *   keys     row b's present keys in ORT's layout [B, K, T, H], T = total_sequence_length (without
 *            a past input: the new keys, T = S); query head h reads kv head ⌊h·K/N⌋
 *   scores   scale·q·kᵀ (scale 0 → 1/√H), optional softcap, then + attention_bias (that order:
 *            ORT's CPU kernel), masked to keys j ≤ past_b + s, j < total_b (and, with
 *            local_window_size w > 0, j > past_b + s − w; see allowedKeys for padded queries)
 *   softmax  with smooth_softmax or head_sink, over the keys and one more logit per head (0 or
 *            head_sink[h]) that has no value
 *   output   softmax · v, heads merged: [B, S, N·H]. present_key/value and output_qk are not
 *            reproduced (the objective never reads them).
 * A quantized KV cache (k_quant_type / v_quant_type other than NONE) is refused.
 * ORT computes nothing meaningful for a query past its row's length (right padding); the
 * decomposition reproduces what its CPU kernel outputs there (masked attention over the row's
 * real keys; with a local window see allowedKeys), so the probe-batch check holds on padded rows.
 */
import type { GradEmitter } from './emitter.ts';
import { gradError, attrFloat, attrInt, optionalInput } from './rule.ts';
import { attend, attentionScale, dim, expandKvHeads, range, rotate, splitHeads } from './decompose-attention-core.ts';
import type { DecomposeContext, Decomposition } from './decomposition.ts';

/**
 * Per-row lengths as int64 [B]: total_b and past_b; `first`: bool scalar, S = total_sequence_length;
 * `totalSeq`: total_sequence_length as an int64 scalar (the present keys' length T).
 */
interface Rows {
  total: string;
  past: string;
  first: string;
  totalSeq: string;
}

function rowLengths(d: DecomposeContext, S: string): Rows {
  const { node, e } = d;
  const total = e.op1('Add', [e.op1('Cast', [node.inputs[5]], { to: 7 }), e.i64([1], [])]);
  const totalSeq = e.op1('Reshape', [e.op1('Cast', [node.inputs[6]], { to: 7 }), e.i64([], [0])]);
  const first = e.op1('Equal', [S, totalSeq]);
  return { total, first, totalSeq, past: e.op1('Where', [first, e.i64([0], []), e.op1('Sub', [total, S])]) };
}

/** Absolute positions past_b + s as int64 [B, S]. */
function queryPositions(e: GradEmitter, rows: Rows, S: string): string {
  return e.op1('Add', [e.unsqueeze(rows.past, [1]), e.unsqueeze(range(e, S), [0])]);
}

/** Rotary cos/sin rows for each query's position, shaped [B, 1, S, R/2] to broadcast over BNSH. */
function rotaryTables(d: DecomposeContext, positions: string, rows: Rows): { cos: string; sin: string } {
  const { node, e } = d;
  const ids = optionalInput(node, 9);
  const pos = ids ? e.op1('Where', [rows.first, positions, e.op1('Cast', [ids], { to: 7 })]) : positions;
  const gatherAt = (cache: string) => e.unsqueeze(e.op1('Gather', [cache, pos], { axis: 0 }), [1]);
  return { cos: gatherAt(node.inputs[7]), sin: gatherAt(node.inputs[8]) };
}

/**
 * Where row b's present entries come from, as flat indices [B, T] into [B·(P+S), ·] (the past
 * then the new entries, row by row): its first past_b past entries, then its S new ones
 * (positions beyond are masked; they read the last new entry). One index for keys and values:
 * past_key and past_value have the same P, and both have the same S new entries.
 */
function presentIndex(e: GradEmitter, past: string, S: string, rows: Rows): string {
  const P = dim(e, past, 2);
  const L = e.op1('Add', [P, S]);
  const j = e.unsqueeze(range(e, rows.totalSeq), [0]); // [1, T]
  const pb = e.unsqueeze(rows.past, [1]); // [B, 1]
  let src = e.op1('Where', [e.op1('Less', [j, pb]), j, e.op1('Add', [e.op1('Sub', [j, pb]), P])]);
  const last = e.op1('Sub', [L, e.i64([1], [])]);
  src = e.op1('Where', [e.op1('Less', [src, L]), src, last]); // [B, T]
  return e.op1('Add', [e.op1('Mul', [e.unsqueeze(range(e, dim(e, past, 0)), [1]), L]), src]);
}

/** Present keys (or values) [B, K, T, H] in ORT's layout: a batched gather of past ‖ new at `index`. */
function presentLayout(e: GradEmitter, past: string, x: string, index: string, K: number, H: number): string {
  const cat = e.op1('Concat', [past, x], { axis: 2 }); // [B, K, P+S, H]
  const byRow = e.op1('Reshape', [e.op1('Transpose', [cat], { perm: [0, 2, 1, 3] }), e.i64([-1, K, H])]);
  return e.op1('Transpose', [e.op1('Gather', [byRow, index], { axis: 0 })], { perm: [0, 2, 1, 3] });
}

/**
 * Which keys each query may read: bool [B, 1, S, T]. With a local window, a query past its row's
 * length (right padding) is what ORT makes of it: with a sink (smooth_softmax, head_sink) it
 * reads the window of the row's last real query; without one, the part of its own window before
 * the row's end (and `rowOk` marks the queries whose window holds no key at all: ORT outputs 0).
 */
function allowedKeys(d: DecomposeContext, positions: string, rows: Rows, T: string, sink: boolean): { allowed: string; rowOk: string | null } {
  const { node, e } = d;
  const j = e.unsqueeze(range(e, T), [0, 1]); // [1, 1, T]
  const at = e.unsqueeze(positions, [2]); // [B, S, 1]
  const total = e.unsqueeze(rows.total, [1, 2]); // [B, 1, 1]
  let allowed = e.op1('And', [e.op1('Not', [e.op1('Greater', [j, at])]), e.op1('Less', [j, total])]);
  const window = attrInt(node, 'local_window_size', -1);
  if (window <= 0) return { allowed: e.unsqueeze(allowed, [1]), rowOk: null };
  const lastReal = e.op1('Sub', [total, e.i64([1], [])]);
  const from = sink ? e.op1('Where', [e.op1('Greater', [at, lastReal]), lastReal, at]) : at;
  const start = e.op1('Sub', [from, e.i64([window - 1], [])]); // [B, S, 1]
  allowed = e.op1('And', [allowed, e.op1('Not', [e.op1('Less', [j, start])])]);
  return { allowed: e.unsqueeze(allowed, [1]), rowOk: sink ? null : e.unsqueeze(e.op1('Less', [start, total]), [1]) };
}

/** The extra softmax logit per head (head_sink, or 0 with smooth_softmax), [1, N, 1, 1]; null: none. */
function sinkLogits(d: DecomposeContext, type: string): string | null {
  const { node, e } = d;
  const sink = optionalInput(node, 11);
  if (sink) return e.op1('Reshape', [sink, e.i64([1, -1, 1, 1])]);
  return attrInt(node, 'smooth_softmax', 0) === 1 ? e.op1('Reshape', [e.scalar(0, type), e.i64([1, 1, 1, 1])]) : null;
}

/**
 * ORT's quantized KV cache (int8/int4 past with k_scale/v_scale) is not decomposed: the kernel
 * rounds the new keys and values, which lie on the gradient path (their exact gradient is zero
 * almost everywhere: nothing finite differences could confirm).
 */
function refuseQuantizedCache(node: DecomposeContext['node']): void {
  for (const name of ['k_quant_type', 'v_quant_type']) {
    const a = node.attributes[name];
    if (a?.type === 'string' && a.value !== 'NONE') throw gradError(node, `not supported: ${name}=${a.value} (a quantized KV cache) in the decomposition`);
  }
}

const groupQueryAttention: Decomposition = (d) => {
  const { node, e } = d;
  refuseQuantizedCache(node);
  const N = attrInt(node, 'num_heads', 0);
  const K = attrInt(node, 'kv_num_heads', 0);
  const query = node.inputs[0];
  const type = e.meta(query).type;
  const packed = !optionalInput(node, 1);
  const D = e.meta(query).shape[2];
  const H = packed ? D / (N + 2 * K) : D / N;
  if (!Number.isInteger(H) || N % K !== 0) throw gradError(node, `hidden size ${D} does not split into ${N} query and ${K} kv heads`);
  let q: string, k: string, v: string;
  if (packed) [q, k, v] = e.split(splitHeads(e, query, N + 2 * K, H), 1, [N, K, K]);
  else [q, k, v] = [splitHeads(e, query, N, H), splitHeads(e, node.inputs[1], K, H), splitHeads(e, node.inputs[2], K, H)];
  const S = dim(e, q, 2);
  const rows = rowLengths(d, S);
  const positions = queryPositions(e, rows, S);
  if (attrInt(node, 'do_rotary', 0) === 1) {
    const R = 2 * e.meta(node.inputs[7]).shape[1];
    const { cos, sin } = rotaryTables(d, positions, rows);
    const inter = attrInt(node, 'rotary_interleaved', 0) === 1;
    q = rotate(e, q, cos, sin, R, H, inter);
    k = rotate(e, k, cos, sin, R, H, inter);
  }
  const [pastKey, pastValue] = [optionalInput(node, 3), optionalInput(node, 4)];
  if (!pastKey !== !pastValue) throw gradError(node, 'not supported: past_key without past_value (or the reverse) in the decomposition');
  let T = S;
  if (pastKey && pastValue) {
    T = rows.totalSeq;
    const index = presentIndex(e, pastKey, S, rows);
    k = presentLayout(e, pastKey, k, index, K, H);
    v = presentLayout(e, pastValue, v, index, K, H);
  }
  const sink = sinkLogits(d, type);
  const { allowed, rowOk } = allowedKeys(d, positions, rows, T, sink !== null);
  let out = attend(e, q, expandKvHeads(e, k, N, K, H), expandKvHeads(e, v, N, K, H), {
    scale: attentionScale(node, H),
    allowed,
    bias: optionalInput(node, 10) ?? null,
    biasAfterSoftcap: true,
    softcap: attrFloat(node, 'softcap', 0),
    sink,
    type,
  });
  if (rowOk) out = e.op1('Where', [rowOk, out, e.scalar(0, type)]);
  const merged = e.op1('Reshape', [e.op1('Transpose', [out], { perm: [0, 2, 1, 3] }), e.i64([0, 0, N * H])]);
  return [merged, null, null, null];
};

export const GQA_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:GroupQueryAttention': groupQueryAttention,
};
