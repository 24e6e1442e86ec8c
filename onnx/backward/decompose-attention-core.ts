/**
 * Pieces the attention decompositions share, in BNSH layout ([batch, heads, sequence, head]):
 * head split/merge, rotary embedding, grouped-query head expansion, and masked scaled
 * dot-product attention. Sizes that vary at run time (batch, sequence, past) come from Shape();
 * head counts and head size are static (attributes and the probe's hidden size).
 */
import type { GradEmitter } from './emitter.ts';
import type { NodeInfo } from '../model-reader.ts';
import { attrFloat } from './rule.ts';

/** float32's lowest value: what masked scores are set to (exp underflows to exactly 0). */
export const MASKED_SCORE = -3.4028234663852886e38;

/** The scores' scale: the `scale` attribute, or 1/√H when it is 0 or absent (every attention op's rule). */
export function attentionScale(node: NodeInfo, H: number): number {
  return attrFloat(node, 'scale', 0) || 1 / Math.sqrt(H);
}

/**
 * Keys and values [B, heads, L, ·] after their past ([B, heads, P, ·], each optional) along the
 * sequence, and the past length P as an int64 scalar (0 without a past key).
 */
export function afterPast(e: GradEmitter, k: string, v: string, pastKey: string | undefined, pastValue: string | undefined): { k: string; v: string; past: string } {
  return {
    k: pastKey ? e.op1('Concat', [pastKey, k], { axis: 2 }) : k,
    v: pastValue ? e.op1('Concat', [pastValue, v], { axis: 2 }) : v,
    past: pastKey ? dim(e, pastKey, 2) : e.i64([0], []),
  };
}

/** [B, S, heads·H] → [B, heads, S, H]. */
export function splitHeads(e: GradEmitter, x: string, heads: number, H: number): string {
  return e.op1('Transpose', [e.op1('Reshape', [x, e.i64([0, 0, heads, H])])], { perm: [0, 2, 1, 3] });
}

/** [B, heads, S, H] → [B, S, heads·H]. */
export function mergeHeads(e: GradEmitter, x: string, heads: number, H: number): string {
  return e.op1('Reshape', [e.op1('Transpose', [x], { perm: [0, 2, 1, 3] }), e.i64([0, 0, heads * H])]);
}

/** Dimension `axis` of x as an int64 scalar. */
export function dim(e: GradEmitter, x: string, axis: number): string {
  return e.op1('Gather', [e.shape(x), e.i64([axis], [])], { axis: 0 });
}

/** 0..n-1 as int64 [n] (n an int64 scalar). */
export function range(e: GradEmitter, n: string, start?: string): string {
  const from = start ?? e.i64([0], []);
  return e.op1('Range', [from, start ? e.op1('Add', [start, n]) : n, e.i64([1], [])]);
}

/**
 * Rotary embedding of x [B, heads, S, H] at positions cos/sin already gathered to a shape that
 * broadcasts against [B, heads, S, R/2] (R = rotary dims, the first R of each head; the rest
 * pass through). Non-interleaved: halves (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin);
 * interleaved: the same on pairs (x[2i], x[2i+1]).
 */
export function rotate(e: GradEmitter, x: string, cos: string, sin: string, R: number, H: number, interleaved: boolean): string {
  const axis = e.i64([3]);
  const part = (t: string, a: number, b: number) => e.op1('Slice', [t, e.i64([a]), e.i64([b]), axis]);
  const xr = R === H ? x : part(x, 0, R);
  let rotated: string;
  if (!interleaved) {
    const x1 = part(xr, 0, R / 2);
    const x2 = part(xr, R / 2, R);
    const o1 = e.op1('Sub', [e.op1('Mul', [x1, cos]), e.op1('Mul', [x2, sin])]);
    const o2 = e.op1('Add', [e.op1('Mul', [x2, cos]), e.op1('Mul', [x1, sin])]);
    rotated = e.op1('Concat', [o1, o2], { axis: 3 });
  } else {
    const pairs = e.op1('Reshape', [xr, e.i64([0, 0, 0, R / 2, 2])]);
    const at = (k: number) => e.op1('Slice', [pairs, e.i64([k]), e.i64([k + 1]), e.i64([4])]);
    const [x1, x2] = [at(0), at(1)];
    const c = e.unsqueeze(cos, [-1]);
    const s = e.unsqueeze(sin, [-1]);
    const o1 = e.op1('Sub', [e.op1('Mul', [x1, c]), e.op1('Mul', [x2, s])]);
    const o2 = e.op1('Add', [e.op1('Mul', [x2, c]), e.op1('Mul', [x1, s])]);
    rotated = e.op1('Reshape', [e.op1('Concat', [o1, o2], { axis: 4 }), e.i64([0, 0, 0, R])]);
  }
  return R === H ? rotated : e.op1('Concat', [rotated, part(x, R, H)], { axis: 3 });
}

/** kv [B, K, L, H] repeated so query head h reads kv head ⌊h / (N/K)⌋: [B, N, L, H]. */
export function expandKvHeads(e: GradEmitter, kv: string, N: number, K: number, H: number): string {
  if (N === K) return kv;
  const five = e.unsqueeze(kv, [2]); // [B, K, 1, L, H]
  const shape = e.shape(kv);
  const b = e.op1('Slice', [shape, e.i64([0]), e.i64([1])]);
  const l = e.op1('Slice', [shape, e.i64([2]), e.i64([3])]);
  const target = e.op1('Concat', [b, e.i64([K, N / K]), l, e.i64([H])], { axis: 0 });
  const expanded = e.op1('Expand', [five, target]);
  return e.op1('Reshape', [expanded, e.op1('Concat', [b, e.i64([N]), l, e.i64([H])], { axis: 0 })]);
}

/**
 * softmax(scale·q·kᵀ (+ bias), masked where `allowed` is false) · v. q [B,N,S,H], k/v [B,N,L,H];
 * allowed: bool broadcasting to [B,N,S,L] or null; bias: float broadcasting to the scores or null
 * (added before softcap, unless biasAfterSoftcap); sink: a logit per head broadcasting to
 * [1,N,1,1] that joins each row's softmax as one more key with no value (smooth softmax: 0).
 */
export function attend(
  e: GradEmitter,
  q: string,
  k: string,
  v: string,
  opts: { scale: number; allowed: string | null; bias?: string | null; biasAfterSoftcap?: boolean; softcap?: number; sink?: string | null; type: string; maskValue?: number },
): string {
  let scores = e.op1('Mul', [e.op1('MatMul', [q, e.op1('Transpose', [k], { perm: [0, 1, 3, 2] })]), e.scalar(opts.scale, opts.type)]);
  if (opts.bias && !opts.biasAfterSoftcap) scores = e.op1('Add', [scores, opts.bias]);
  if (opts.softcap && opts.softcap > 0) {
    const c = e.scalar(opts.softcap, opts.type);
    scores = e.op1('Mul', [e.op1('Tanh', [e.op1('Div', [scores, c])]), c]);
  }
  if (opts.bias && opts.biasAfterSoftcap) scores = e.op1('Add', [scores, opts.bias]);
  if (opts.allowed) scores = e.op1('Where', [opts.allowed, scores, e.scalar(opts.maskValue ?? MASKED_SCORE, opts.type)]);
  if (!opts.sink) return e.op1('MatMul', [e.op1('Softmax', [scores], { axis: 3 }), v]);
  // The sink is one more column of the softmax, dropped after it: only its share of the mass remains.
  const lead = e.op1('Slice', [e.shape(scores), e.i64([0]), e.i64([3])]);
  const column = e.op1('Expand', [opts.sink, e.op1('Concat', [lead, e.i64([1])], { axis: 0 })]);
  const probs = e.op1('Softmax', [e.op1('Concat', [scores, column], { axis: 3 })], { axis: 3 });
  return e.op1('MatMul', [e.op1('Slice', [probs, e.i64([0]), e.i64([-1]), e.i64([3])]), v]);
}

/** Causal mask [S, L]: query s (at absolute position past + s) sees keys j ≤ past + s. */
export function causalMask(e: GradEmitter, S: string, L: string, past: string): string {
  const j = e.unsqueeze(range(e, L), [0]); // [1, L]
  const limit = e.unsqueeze(e.op1('Add', [range(e, S), e.op1('Add', [past, e.i64([1], [])])]), [1]); // [S, 1]
  return e.op1('Less', [j, limit]);
}
