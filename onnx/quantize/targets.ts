/**
 * Which MatMuls get quantized: every MatMul (ai.onnx) whose B is a 2-D float constant
 * (initializer or Constant node) — the decoder's linear layers. Attention score/context MatMuls
 * have two activations and are never candidates. lm_head (the MatMul producing a graph output
 * such as `logits`, or named /lm_head/) stays float unless includeLmHead, as bitsandbytes skips
 * it; embeddings are Gathers and are never touched.
 */
import { constantTensor, type NodeInfo, type OnnxModel, type TensorInfo } from '../model-reader.ts';
import { DTYPE } from '../dtypes.ts';

export interface QuantTarget {
  node: NodeInfo;
  weight: TensorInfo;
  /** The Constant node holding the weight, when it is not an initializer. */
  constantNode?: NodeInfo;
  K: number;
  N: number;
  /** Activation dtype (float or float16): B's dtype, which MatMul requires A to share. */
  dtype: 'float' | 'float16';
}

export interface TargetSelection {
  targets: QuantTarget[];
  /** Constant-weight MatMuls left alone, with the reason ("name (lm_head)"). */
  skipped: string[];
}

const FLOAT_TYPES: Record<number, 'float' | 'float16'> = { [DTYPE.float]: 'float', [DTYPE.float16]: 'float16' };

export function isLmHead(m: OnnxModel, node: NodeInfo, weightName: string): boolean {
  const outputs = new Set(m.outputs.map((o) => o.name));
  return node.outputs.some((o) => outputs.has(o)) || /lm_head/i.test(node.name) || /lm_head/i.test(weightName);
}

export function selectTargets(m: OnnxModel, includeLmHead: boolean): TargetSelection {
  const targets: QuantTarget[] = [];
  const skipped: string[] = [];
  for (const node of m.nodes) {
    if (node.opType !== 'MatMul' || node.domain !== '' || node.inputs.length !== 2) continue;
    const wName = node.inputs[1];
    const weight = constantTensor(m, wName);
    if (!weight) continue;
    const label = node.name || node.outputs[0];
    const dtype = FLOAT_TYPES[weight.dataType];
    if (weight.dims.length !== 2) {
      skipped.push(`${label} (weight ${wName} is ${weight.dims.length}-D)`);
      continue;
    }
    if (!dtype) {
      skipped.push(`${label} (weight ${wName} has data type ${weight.dataType})`);
      continue;
    }
    if (!includeLmHead && isLmHead(m, node, wName)) {
      skipped.push(`${label} (lm_head)`);
      continue;
    }
    const constantNode = m.initializers.has(wName) ? undefined : m.nodes.find((n) => n.opType === 'Constant' && n.outputs[0] === wName);
    targets.push({ node, weight, constantNode, K: weight.dims[0], N: weight.dims[1], dtype });
  }
  return { targets, skipped };
}
