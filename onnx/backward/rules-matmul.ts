/**
 * MatMul (numpy semantics: batched, broadcast batch dims, 1-D operands promoted) and Gemm.
 * For y = A·B: dA = g·Bᵀ, dB = Aᵀ·g, each summed over the batch dims its operand was broadcast on.
 */
import { broadcastShapes, type GradEmitter } from './emitter.ts';
import { attrFloat, attrInt, onlyGrad, type GradRule } from './rule.ts';

function transposeLast2(e: GradEmitter, x: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return e.op1('Transpose', [x], { perm });
}

/**
 * Gradients of y = A @ B given g = dF/dy. Exported for the quantized rules, which call it with a
 * dequantized weight in place of B.
 */
export function matmulGrads(e: GradEmitter, a: string, b: string, g: string, needA: boolean, needB: boolean): [string | null, string | null] {
  const sa = e.meta(a).shape;
  const sb = e.meta(b).shape;
  const type = e.meta(a).type;
  // Promote 1-D operands to matrices, as MatMul does, and the gradient with them.
  const a2 = sa.length === 1 ? e.setMeta(e.unsqueeze(a, [0]), { type, shape: [1, ...sa] }) : a;
  const b2 = sb.length === 1 ? e.setMeta(e.unsqueeze(b, [1]), { type, shape: [...sb, 1] }) : b;
  const sa2 = e.meta(a2).shape;
  const sb2 = e.meta(b2).shape;
  const batch = broadcastShapes(sa2.slice(0, -2), sb2.slice(0, -2));
  const M = sa2[sa2.length - 2];
  const K = sa2[sa2.length - 1];
  const N = sb2[sb2.length - 1];
  let g2 = g;
  if (sa.length === 1 && sb.length === 1) g2 = e.unsqueeze(g, [0, 1]);
  else if (sa.length === 1) g2 = e.unsqueeze(g, [-2]);
  else if (sb.length === 1) g2 = e.unsqueeze(g, [-1]);
  let ga: string | null = null;
  let gb: string | null = null;
  // A stored weight is read behind a gate (GradEmitter.gate): ORT would fold Transpose(W) into a
  // resident copy of W.
  if (needA) {
    ga = e.op1('MatMul', [g2, transposeLast2(e, e.gate(b2, g2), sb2.length)]);
    ga = e.unbroadcast(ga, [...batch, M, K], a2);
    if (sa.length === 1) ga = e.squeeze(ga, [0]);
  }
  if (needB) {
    gb = e.op1('MatMul', [transposeLast2(e, e.gate(a2, g2), sa2.length), g2]);
    gb = e.unbroadcast(gb, [...batch, K, N], b2);
    if (sb.length === 1) gb = e.squeeze(gb, [-1]);
  }
  return [ga, gb];
}

const matmul: GradRule = (c) => {
  const [a, b] = c.node.inputs;
  return matmulGrads(c.e, a, b, onlyGrad(c), c.needs[0], c.needs[1]);
};

// Y = alpha·A'·B' + beta·C with A' = transA ? Aᵀ : A, B' likewise.
const gemm: GradRule = (c) => {
  const g = onlyGrad(c);
  const e = c.e;
  const [a, b, cIn] = c.node.inputs;
  const transA = attrInt(c.node, 'transA', 0) === 1;
  const transB = attrInt(c.node, 'transB', 0) === 1;
  const alpha = attrFloat(c.node, 'alpha', 1);
  const beta = attrFloat(c.node, 'beta', 1);
  const type = e.meta(c.node.outputs[0]).type;
  const scale = (x: string, s: number) => (s === 1 ? x : e.op1('Mul', [x, e.scalar(s, type)]));
  // Stored weights behind a gate, as in matmulGrads.
  const read = (x: string) => e.gate(x, g);
  const T = (x: string) => e.op1('Transpose', [read(x)], { perm: [1, 0] });
  const out: (string | null)[] = [null, null, null];
  if (c.needs[0]) {
    const gap = e.op1('MatMul', [g, transB ? read(b) : T(b)]); // dA' = g·B'ᵀ
    out[0] = scale(transA ? T(gap) : gap, alpha);
  }
  if (c.needs[1]) {
    const gbp = e.op1('MatMul', [transA ? read(a) : T(a), g]); // dB' = A'ᵀ·g
    out[1] = scale(transB ? T(gbp) : gbp, alpha);
  }
  if (c.needs[2] && cIn) out[2] = e.unbroadcast(scale(g, beta), e.meta(c.node.outputs[0]).shape, cIn);
  return out;
};

export const MATMUL_RULES: Record<string, GradRule> = { MatMul: matmul, Gemm: gemm };
