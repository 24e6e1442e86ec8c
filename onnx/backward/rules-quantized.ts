/**
 * Quantized matmuls. Straight-through convention: the gradient with respect to the activation
 * uses the dequantized weight Ŵ (exactly what ONNX Runtime multiplies by, recomputed in JS by
 * dequantize.ts and embedded as a constant), dx = dy·Ŵᵀ; rounding of activations is treated as
 * the identity and weights never get a gradient. Units (single contrib nodes and multi-node
 * int8 patterns) are found by quantized-patterns.ts, which gives each its rule from here; the
 * registry entries below only fire for nodes that were not recognised as a unit.
 */
import { QuantlensError } from '../../core/errors.ts';
import { floatToHalf } from '../dtypes.ts';
import { tensor, type TensorData } from '../builder.ts';
import { matmulGrads } from './rules-matmul.ts';
import { onlyGrad, type GradRule } from './rule.ts';
import type { QuantizedUnit } from './quantized-unit.ts';

function weightConstant(type: string, w: Float32Array, K: number, N: number, unit: string): TensorData {
  if (type === 'float32') return tensor('float', [K, N], w);
  if (type === 'float16') return tensor('float16', [K, N], floatToHalf(w));
  throw new QuantlensError('GRADIENT', `${unit}: activations of type ${type} have no straight-through gradient`);
}

/** dx = dy·Ŵᵀ for one unit (llm-int8: columns on the int8 path scaled by its factor). */
export function straightThroughRule(u: QuantizedUnit): GradRule {
  return (c) => {
    const g = onlyGrad(c);
    const e = c.e;
    const out: (string | null)[] = c.node.inputs.map(() => null);
    if (!c.needs[0]) return out;
    const type = e.meta(u.input).type;
    const label = `${u.kind} (node ${c.node.name || u.output})`;
    const w = u.weight();
    if (w.length !== u.K * u.N) throw new QuantlensError('GRADIENT', `${label}: dequantized weight has ${w.length} values, expected ${u.K}×${u.N}`);
    const wHat = e.setMeta(e.constTensor(weightConstant(type, w, u.K, u.N, label), 'dequantized_weight'), { type, shape: [u.K, u.N] });
    let gx = matmulGrads(e, u.input, wHat, g, true, false)[0]!;
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
