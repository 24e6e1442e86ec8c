/**
 * Quantized matmuls. Straight-through convention: the gradient with respect to the activation
 * uses the dequantized weight Ŵ (exactly what ONNX Runtime multiplies by: dequantize-graph.ts
 * recomputes it in the graph, equal to dequantize.ts's reference), dx = dy·Ŵᵀ; rounding of activations is treated as
 * the identity and weights never get a gradient. Units (single contrib nodes and multi-node
 * int8 patterns) are found by quantized-patterns.ts, which gives each its rule from here; the
 * registry entries below only fire for nodes that were not recognised as a unit.
 */
import { QuantlensError } from '../../core/errors.ts';
import { onlyGrad, onnxTypeCode, type GradRule } from './rule.ts';
import type { QuantizedUnit } from './quantized-unit.ts';

/**
 * dx = dy·Ŵᵀ for one unit (llm-int8: columns on the int8 path scaled by its factor). Ŵᵀ [N, K] is
 * dequantized inside the graph from the model's stored tensors (dequantize-graph.ts), behind a
 * gate on dy, so the graph holds no float copy of the weight and ORT cannot fold one into it.
 */
export function straightThroughRule(u: QuantizedUnit): GradRule {
  return (c) => {
    const g = onlyGrad(c);
    const e = c.e;
    const out: (string | null)[] = c.node.inputs.map(() => null);
    if (!c.needs[0]) return out;
    const type = e.meta(u.input).type;
    const label = `${u.kind} (node ${c.node.name || u.output})`;
    if (type !== 'float32' && type !== 'float16') throw new QuantlensError('GRADIENT', `${label}: activations of type ${type} have no straight-through gradient`);
    const f32 = u.emitWeightT(e, (name) => e.gate(name, g));
    const wT = type === 'float32' ? f32 : e.op1('Cast', [f32], { to: onnxTypeCode(type) });
    let gx = e.setMeta(e.op1('MatMul', [g, wT]), { type, shape: e.meta(u.input).shape });
    if (u.outliers) {
      // Outlier columns took the float path (factor 1); the rest the int8 path.
      const perColumn = e.op1('Where', [u.outliers.columns, e.scalar(1, type), e.scalar(u.outliers.int8Factor, type)]);
      gx = e.op1('Mul', [gx, perColumn]);
    }
    out[0] = gx;
    return out;
  };
}

const notRecognised: GradRule = (c) => {
  throw new QuantlensError(
    'GRADIENT',
    `no gradient for ${c.node.opType} (node ${c.node.name || c.node.outputs[0]}): it is not part of a quantized linear layer quantlens recognises (MatMulNBits, MatMulBnb4, DynamicQuantizeLinear→MatMulInteger→Cast→Mul, llm-int8)`,
  );
};

export const QUANTIZED_RULES: Record<string, GradRule> = {
  'com.microsoft:MatMulNBits': notRecognised,
  'com.microsoft:MatMulBnb4': notRecognised,
  'com.microsoft:MatMulInteger16': notRecognised,
  DynamicQuantizeLinear: notRecognised,
};
