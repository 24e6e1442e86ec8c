/**
 * com.microsoft RotaryEmbedding as standard ops. input [B,S,hidden] (heads of size H side by side)
 * or [B,N,S,H]; position_ids [B,S], or [1] = an offset (positions offset + s); cos/sin_cache
 * [max, R/2]. Each head's first R dims are rotated (decompose-attention-core.ts `rotate`), the
 * rest pass through. H = hidden/num_heads when num_heads is given, else R (whole heads rotated).
 */
import { attrInt, gradError, optionalInput } from './rule.ts';
import { range, rotate } from './decompose-attention-core.ts';
import type { Decomposition } from './decomposition.ts';

const rotaryEmbedding: Decomposition = ({ node, e }) => {
  const [input, ids, cosCache, sinCache] = node.inputs;
  const shape = e.meta(input).shape;
  // ORT's CPU kernel takes 3-D and 4-D inputs only, and ignores is_packed_batching and scale on them (checked in the tests).
  if (shape.length !== 3 && shape.length !== 4) throw gradError(node, `not supported: a ${shape.length}-D input in the decomposition (3-D and 4-D are)`);
  const R = attrInt(node, 'rotary_embedding_dim', 0) || 2 * e.meta(cosCache).shape[1];
  const heads = attrInt(node, 'num_heads', 0);
  const H = shape.length === 4 ? shape[3] : heads ? shape[2] / heads : R;
  if (!Number.isInteger(H) || R > H) throw gradError(node, `rotary dims ${R} do not fit heads of ${H}`);
  const rank3 = shape.length === 3;
  // Rotate in [B, S, N, H] (3-D input) or [B, N, S, H]; cos/sin broadcast as [B|1, S, 1, R/2] or [B|1, 1, S, R/2].
  const x = rank3 ? e.op1('Reshape', [input, e.i64([0, 0, -1, H])]) : input;
  const seqAxis = rank3 ? 1 : 2;
  const idsRank = e.rank(ids);
  const pos = idsRank === 2 ? ids : e.op1('Add', [range(e, e.op1('Gather', [e.shape(input), e.i64([seqAxis], [])], { axis: 0 })), e.op1('Reshape', [ids, e.i64([], [0])])]);
  const table = (cache: string) => {
    const rows = e.op1('Gather', [cache, pos], { axis: 0 }); // [B,S,R/2] or [S,R/2]
    if (rank3) return idsRank === 2 ? e.unsqueeze(rows, [2]) : e.unsqueeze(rows, [0, 2]);
    return idsRank === 2 ? e.unsqueeze(rows, [1]) : e.unsqueeze(rows, [0, 1]);
  };
  const y = rotate(e, x, table(cosCache), table(sinCache), R, H, attrInt(node, 'interleaved', 0) === 1);
  return [rank3 ? e.op1('Reshape', [y, e.shape(input)]) : y];
};

/**
 * ai.onnx RotaryEmbedding (opset 23): RotaryEmbedding(X, cos_cache, sin_cache, position_ids?).
 * X [B, N, S, H] or [B, S, N·H] (num_heads given); with position_ids [B, S] the caches are
 * [max, R/2] tables, without them the caches are already per position: [B, S, R/2].
 */
const onnxRotaryEmbedding: Decomposition = ({ node, e }) => {
  const [input, cosCache, sinCache] = node.inputs;
  const ids = optionalInput(node, 3);
  const shape = e.meta(input).shape;
  const heads = attrInt(node, 'num_heads', 0);
  const rank3 = shape.length === 3;
  if (rank3 && !heads) throw gradError(node, 'a 3-D input needs num_heads');
  const H = rank3 ? shape[2] / heads : shape[3];
  const R = attrInt(node, 'rotary_embedding_dim', 0) || H;
  if (!Number.isInteger(H) || R > H) throw gradError(node, `rotary dims ${R} do not fit heads of ${H}`);
  // Rotate in [B, S, N, H] (3-D input) or [B, N, S, H]; tables broadcast as [B, S, 1, R/2] or [B, 1, S, R/2].
  const x = rank3 ? e.op1('Reshape', [input, e.i64([0, 0, heads, H])]) : input;
  const table = (cache: string) => e.unsqueeze(ids ? e.op1('Gather', [cache, ids], { axis: 0 }) : cache, [rank3 ? 2 : 1]);
  const y = rotate(e, x, table(cosCache), table(sinCache), R, H, attrInt(node, 'interleaved', 0) === 1);
  return [rank3 ? e.op1('Reshape', [y, e.shape(input)]) : y];
};

export const ROTARY_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:RotaryEmbedding': rotaryEmbedding,
  RotaryEmbedding: onnxRotaryEmbedding,
};
