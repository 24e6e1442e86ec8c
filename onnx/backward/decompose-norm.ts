/**
 * ONNX Runtime's normalisation contrib ops as standard ops (ReduceMean, Sqrt, Div…), with s the
 * normalised input, axes the trailing axes from `axis` (default −1), eps = epsilon:
 *   SimplifiedLayerNormalization(X, scale)               y = X / √(mean(X²) + eps) · scale
 *   RMSNormalization (ai.onnx, opset 23)                 the same
 *   SkipSimplifiedLayerNormalization(input, skip, γ, b?)  s = input + skip (+ b); y = s / √(mean(s²) + eps) · γ
 *   SkipLayerNormalization(input, skip, γ, β?, b?)        s = input + skip (+ b); y = (s − μ) / √(var + eps) · γ (+ β)
 * Output 3 of the Skip ops is s. Statistic outputs (mean, inverse std) are not reproduced.
 * (ONNX Runtime registers SimplifiedLayerNormalization in the ai.onnx domain only.)
 * Unlike the hand-written rules these replace, γ and β may depend on the override too.
 */
import type { GradEmitter } from './emitter.ts';
import { attrFloat, attrInt, optionalInput } from './rule.ts';
import { normAxis } from './emitter.ts';
import type { Decomposition } from './decomposition.ts';

function normalise(e: GradEmitter, s: string, axes: number[], eps: number, centred: boolean): string {
  const type = e.meta(s).type;
  const xc = centred ? e.op1('Sub', [s, e.reduceMean(s, axes, true)]) : s;
  const ms = e.reduceMean(e.op1('Mul', [xc, xc]), axes, true);
  return e.op1('Div', [xc, e.op1('Sqrt', [e.op1('Add', [ms, e.scalar(eps, type)])])]);
}

const simplified: Decomposition = ({ node, e }) => {
  const [x, scale] = node.inputs;
  const r = e.rank(x);
  const axis = normAxis(attrInt(node, 'axis', -1), r);
  const axes = Array.from({ length: r - axis }, (_, i) => axis + i);
  return [e.op1('Mul', [normalise(e, x, axes, attrFloat(node, 'epsilon', 1e-5), false), scale]), null];
};

function skipNorm(centred: boolean): Decomposition {
  return ({ node, e }) => {
    const [input, skip, gamma] = node.inputs;
    const beta = centred ? optionalInput(node, 3) : undefined;
    const bias = optionalInput(node, centred ? 4 : 3);
    let s = e.op1('Add', [input, skip]);
    if (bias) s = e.op1('Add', [s, bias]);
    e.setMeta(s, e.meta(input));
    let y = e.op1('Mul', [normalise(e, s, [e.rank(input) - 1], attrFloat(node, 'epsilon', 1e-5), centred), gamma]);
    if (beta) y = e.op1('Add', [y, beta]);
    return [y, null, null, s];
  };
}

export const NORM_DECOMPOSITIONS: Record<string, Decomposition> = {
  SimplifiedLayerNormalization: simplified,
  // ai.onnx RMSNormalization (opset 23): the same formula, attributes and inputs (stash_type
  // only sets the precision the kernel computes in).
  RMSNormalization: simplified,
  'com.microsoft:SkipSimplifiedLayerNormalization': skipNorm(false),
  'com.microsoft:SkipLayerNormalization': skipNorm(true),
};

/**
 * EmbedLayerNormalization(input_ids, segment_ids?, word_emb, pos_emb, segment_emb?, γ, β, mask?,
 * position_ids?): s = word_emb[ids] + pos_emb[position_ids or 0..S−1] (+ segment_emb[segment_ids]);
 * y = LayerNorm(s)·γ + β; output 2 is s. Its inputs are ids and weights, so it is on a gradient
 * path only when an embedding table depends on the attributed tensor (tested so); the
 * decomposition exists so every contrib op of these exports has one. The int32 mask_index output
 * is not reproduced.
 */
const embedLayerNorm: Decomposition = ({ node, e }) => {
  const [ids, segIds, word, pos, seg, gamma, beta] = node.inputs;
  const positionIds = optionalInput(node, 8);
  let s = e.op1('Gather', [word, ids], { axis: 0 });
  const S = e.op1('Gather', [e.shape(ids), e.i64([1], [])], { axis: 0 });
  const positions = positionIds ?? e.op1('Range', [e.i64([0], []), S, e.i64([1], [])]);
  s = e.op1('Add', [s, e.op1('Gather', [pos, positions], { axis: 0 })]);
  if (segIds && seg) s = e.op1('Add', [s, e.op1('Gather', [seg, segIds], { axis: 0 })]);
  e.setMeta(s, { type: e.meta(word).type, shape: [...e.meta(ids).shape, e.meta(word).shape[1]] });
  const y = e.op1('Add', [e.op1('Mul', [normalise(e, s, [2], attrFloat(node, 'epsilon', 1e-12), true), gamma]), beta]);
  return [y, null, s];
};

export const EMBED_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:EmbedLayerNormalization': embedLayerNorm,
};
