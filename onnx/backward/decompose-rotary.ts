/**
 * com.microsoft RotaryEmbedding as standard ops. input [B,S,hidden] (heads of size H side by side)
 * or [B,N,S,H]; position_ids [B,S], or [1] = an offset (positions offset + s); cos/sin_cache
 * [max, R/2]. Each head's first R dims are rotated (decompose-attention-core.ts `rotate`), the
 * rest pass through. H = hidden/num_heads when num_heads is given, else R (whole heads rotated).
 */
import { attrInt, gradError, optionalInput } from './rule.ts';
import { range, rotate } from './decompose-attention-core.ts';
import type { DecomposeContext, Decomposition } from './decomposition.ts';

/**
 * What both RotaryEmbedding ops share: the input [B, S, N·H] is rotated as [B, S, N, H] (so the
 * tables broadcast as [B|1, S, 1, R/2]), [B, N, S, H] as it is ([B|1, 1, S, R/2]); `table` shapes
 * a cache for that layout (its argument: whether the input is 3-D). Heads of H dims, the first R
 * rotated; `interleaved` as the attribute says.
 */
function rotateInput(d: DecomposeContext, input: string, caches: [string, string], H: number, R: number, table: (cache: string, rank3: boolean) => string): string {
  const { node, e } = d;
  if (!Number.isInteger(H) || R > H) throw gradError(node, `rotary dims ${R} do not fit heads of ${H}`);
  const rank3 = e.meta(input).shape.length === 3;
  const x = rank3 ? e.op1('Reshape', [input, e.i64([0, 0, -1, H])]) : input;
  const y = rotate(e, x, table(caches[0], rank3), table(caches[1], rank3), R, H, attrInt(node, 'interleaved', 0) === 1);
  return rank3 ? e.op1('Reshape', [y, e.shape(input)]) : y;
}

const rotaryEmbedding: Decomposition = (d) => {
  const { node, e } = d;
  const [input, ids, cosCache, sinCache] = node.inputs;
  const shape = e.meta(input).shape;
  // ORT's CPU kernel takes 3-D and 4-D inputs only, and ignores is_packed_batching and scale on them (checked in the tests).
  if (shape.length !== 3 && shape.length !== 4) throw gradError(node, `not supported: a ${shape.length}-D input in the decomposition (3-D and 4-D are)`);
  const R = attrInt(node, 'rotary_embedding_dim', 0) || 2 * e.meta(cosCache).shape[1];
  const heads = attrInt(node, 'num_heads', 0);
  const H = shape.length === 4 ? shape[3] : heads ? shape[2] / heads : R;
  const seqAxis = shape.length === 3 ? 1 : 2;
  const idsRank = e.rank(ids);
  const pos = idsRank === 2 ? ids : e.op1('Add', [range(e, e.op1('Gather', [e.shape(input), e.i64([seqAxis], [])], { axis: 0 })), e.op1('Reshape', [ids, e.i64([], [0])])]);
  const table = (cache: string, rank3: boolean) => {
    const rows = e.op1('Gather', [cache, pos], { axis: 0 }); // [B,S,R/2] or [S,R/2]
    if (rank3) return idsRank === 2 ? e.unsqueeze(rows, [2]) : e.unsqueeze(rows, [0, 2]);
    return idsRank === 2 ? e.unsqueeze(rows, [1]) : e.unsqueeze(rows, [0, 1]);
  };
  return [rotateInput(d, input, [cosCache, sinCache], H, R, table)];
};

/**
 * ai.onnx RotaryEmbedding (opset 23): RotaryEmbedding(X, cos_cache, sin_cache, position_ids?).
 * X [B, N, S, H] or [B, S, N·H] (num_heads given); with position_ids [B, S] the caches are
 * [max, R/2] tables, without them the caches are already per position: [B, S, R/2].
 */
const onnxRotaryEmbedding: Decomposition = (d) => {
  const { node, e } = d;
  const [input, cosCache, sinCache] = node.inputs;
  const ids = optionalInput(node, 3);
  const shape = e.meta(input).shape;
  const heads = attrInt(node, 'num_heads', 0);
  const rank3 = shape.length === 3;
  if (rank3 && !heads) throw gradError(node, 'a 3-D input needs num_heads');
  const H = rank3 ? shape[2] / heads : shape[3];
  const R = attrInt(node, 'rotary_embedding_dim', 0) || H;
  // Tables [B, S, R/2] (gathered at position_ids, or the caches as given) broadcast over the heads.
  const table = (cache: string, r3: boolean) => e.unsqueeze(ids ? e.op1('Gather', [cache, ids], { axis: 0 }) : cache, [r3 ? 2 : 1]);
  return [rotateInput(d, input, [cosCache, sinCache], H, R, table)];
};

export const ROTARY_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:RotaryEmbedding': rotaryEmbedding,
  RotaryEmbedding: onnxRotaryEmbedding,
};
