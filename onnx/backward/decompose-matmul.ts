/**
 * com.microsoft FusedMatMul (what ORT's graph optimizer writes for MatMul over a Transpose, or
 * times a scalar, in saved optimized models) as standard ops:
 *   Y = alpha · op(A) · op(B), with transBatch moving axis 0 behind the other batch axes (ORT's
 *   "transposed on the 1st dimension and batch dimensions") and trans swapping the last two axes.
 */
import type { GradEmitter } from './emitter.ts';
import { attrFloat, attrInt } from './rule.ts';
import type { Decomposition } from './decomposition.ts';

function operand(e: GradEmitter, x: string, transBatch: boolean, trans: boolean): string {
  const r = e.rank(x);
  if (r < 2) return x; // 1-D operands are promoted by MatMul; ORT ignores the flags for them
  let perm = Array.from({ length: r }, (_, i) => i);
  if (transBatch && r > 2) perm = [...perm.slice(1, r - 1), 0, r - 1];
  if (trans) perm = [...perm.slice(0, r - 2), perm[r - 1], perm[r - 2]];
  return perm.every((p, i) => p === i) ? x : e.op1('Transpose', [x], { perm });
}

const fusedMatMul: Decomposition = ({ node, e }) => {
  const [a, b] = node.inputs;
  const A = operand(e, a, attrInt(node, 'transBatchA', 0) === 1, attrInt(node, 'transA', 0) === 1);
  const B = operand(e, b, attrInt(node, 'transBatchB', 0) === 1, attrInt(node, 'transB', 0) === 1);
  const y = e.op1('MatMul', [A, B]);
  const alpha = attrFloat(node, 'alpha', 1);
  return [alpha === 1 ? y : e.op1('Mul', [y, e.scalar(alpha, e.meta(a).type)])];
};

export const MATMUL_DECOMPOSITIONS: Record<string, Decomposition> = {
  'com.microsoft:FusedMatMul': fusedMatMul,
};
