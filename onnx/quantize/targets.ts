/**
 * Which linear layers get quantized. A linear layer is a node applying a constant weight W to an
 * activation x; every one found is either a target or listed as kept in float with the reason:
 *  - MatMul (ai.onnx) with a constant B, or B = Transpose(constant W) (W stored [N, K]);
 *  - Gemm with a constant B, transB either way (GPT-2's Conv1D [in, out] weights, OPT's fc1/fc2),
 *    and its bias C added after the quantized product;
 *  - com.microsoft Attention, whose fused qkv weight is quantized in front of it (attention-unit.ts).
 * Attention score/context MatMuls have two activations and are never linear layers. lm_head (the
 * node producing a graph output such as `logits`, or named /lm_head/) stays float unless
 * includeLmHead, as bitsandbytes skips it; embeddings are Gathers and are never touched.
 * Weights that are already quantized (MatMulNBits, MatMulBnb4, MatMulInteger, …) are listed too,
 * so a caller can refuse to quantize them again (census.ts).
 */
import { readTensorFloat32, type NodeInfo, type OnnxModel, type TensorInfo } from '../model-reader.ts';
import { DTYPE } from '../dtypes.ts';
import { alreadyQuantized, type LinearWeight } from './census.ts';

export interface QuantTarget {
  /** The node replaced: MatMul, Gemm or com.microsoft Attention. */
  node: NodeInfo;
  kind: 'matmul' | 'gemm' | 'attention';
  /** The activation x (input 0). */
  activation: string;
  /** The tensor holding W as stored (before any Transpose). */
  weightName: string;
  weight: TensorInfo;
  /** The Constant node holding the weight, when it is not an initializer. */
  constantNode?: NodeInfo;
  /** W is stored [N, K] (Gemm transB=1, or behind a Transpose node). */
  transposed: boolean;
  /** The Transpose node between W and the target, when there is one. */
  transposeNode?: NodeInfo;
  /** Gemm's C, added to the quantized product. */
  bias?: string;
  K: number;
  N: number;
  /** Activation dtype (float or float16): W's dtype, which the op requires x to share. */
  dtype: 'float' | 'float16';
}

export interface TargetSelection {
  targets: QuantTarget[];
  /** Linear weights left alone, with the reason ("name (lm_head)"). */
  skipped: string[];
  /** Every linear weight of the graph, quantized here or not (census.ts summarises it). */
  linear: LinearWeight[];
}

const FLOAT_TYPES: Record<number, 'float' | 'float16'> = { [DTYPE.float]: 'float', [DTYPE.float16]: 'float16' };

export function isLmHead(m: OnnxModel, node: NodeInfo, weightName: string): boolean {
  const outputs = new Set(m.outputs.map((o) => o.name));
  return node.outputs.some((o) => outputs.has(o)) || /lm_head/i.test(node.name) || /lm_head/i.test(weightName);
}

/** Constants by name (initializers and Constant nodes), built once: graphs have 10⁴+ nodes. */
function constantIndex(m: OnnxModel): { tensor(name: string): TensorInfo | undefined; node(name: string): NodeInfo | undefined } {
  const nodes = new Map<string, NodeInfo>();
  for (const n of m.nodes) if (n.opType === 'Constant' && n.attributes.value?.type === 'tensor') nodes.set(n.outputs[0], n);
  return {
    tensor: (name) => {
      const init = m.initializers.get(name);
      if (init) return init;
      const v = nodes.get(name)?.attributes.value;
      return v?.type === 'tensor' ? v.value : undefined;
    },
    node: (name) => (m.initializers.has(name) ? undefined : nodes.get(name)),
  };
}

const intAttr = (n: NodeInfo, k: string, dflt: number) => {
  const a = n.attributes[k];
  return a?.type === 'int' ? a.value : dflt;
};

const floatAttr = (n: NodeInfo, k: string, dflt: number) => {
  const a = n.attributes[k];
  return a?.type === 'float' ? a.value : dflt;
};

function isIdentity(m: OnnxModel, w: TensorInfo): boolean {
  const [r, s] = w.dims;
  if (w.dims.length !== 2 || r !== s || !FLOAT_TYPES[w.dataType]) return false;
  const d = readTensorFloat32(m, w);
  for (let i = 0; i < d.length; i++) if (d[i] !== (i % (r + 1) === 0 ? 1 : 0)) return false;
  return true;
}

/** A candidate before its checks: the weight as the node sees it. */
interface Candidate {
  node: NodeInfo;
  kind: QuantTarget['kind'];
  weightName: string;
  weight: TensorInfo;
  transposed: boolean;
  transposeNode?: NodeInfo;
  bias?: string;
  /** Why this node cannot be rewritten, when it cannot (checked before the weight's own checks). */
  refuse?: string;
}

/** The constant W behind input `name`: directly, or through a 2-D Transpose. */
function weightBehind(name: string, c: ReturnType<typeof constantIndex>, producers: Map<string, NodeInfo>) {
  const direct = c.tensor(name);
  if (direct) return { weightName: name, weight: direct, viaTranspose: undefined };
  const p = producers.get(name);
  if (p?.opType !== 'Transpose' || p.domain !== '') return null;
  const w = c.tensor(p.inputs[0]);
  if (!w) return null;
  const perm = p.attributes.perm;
  const swaps = w.dims.length === 2 && (perm === undefined || (perm.type === 'ints' && perm.value[0] === 1 && perm.value[1] === 0));
  return swaps ? { weightName: p.inputs[0], weight: w, viaTranspose: p } : null;
}

function candidateOf(m: OnnxModel, node: NodeInfo, c: ReturnType<typeof constantIndex>, producers: Map<string, NodeInfo>): Candidate | null {
  if (node.domain === '' && node.opType === 'MatMul' && node.inputs.length === 2) {
    if (c.tensor(node.inputs[0])) return null; // constant @ activation is not a linear layer
    const w = weightBehind(node.inputs[1], c, producers);
    if (!w) return null;
    return { node, kind: 'matmul', weightName: w.weightName, weight: w.weight, transposed: !!w.viaTranspose, transposeNode: w.viaTranspose };
  }
  if (node.domain === '' && node.opType === 'Gemm') {
    const w = weightBehind(node.inputs[1], c, producers);
    if (!w) return null;
    const transB = intAttr(node, 'transB', 0) === 1;
    const cand: Candidate = { node, kind: 'gemm', weightName: w.weightName, weight: w.weight, transposed: transB !== !!w.viaTranspose, transposeNode: w.viaTranspose, bias: node.inputs[2] || undefined };
    if (intAttr(node, 'transA', 0) !== 0) cand.refuse = 'Gemm with transA=1 is not supported';
    else if (floatAttr(node, 'alpha', 1) !== 1 || (cand.bias && floatAttr(node, 'beta', 1) !== 1)) cand.refuse = 'Gemm with alpha or beta other than 1 is not supported';
    return cand;
  }
  if (node.domain === 'com.microsoft' && node.opType === 'Attention') {
    const w = c.tensor(node.inputs[1]);
    // An identity weight (what the quantized rewrite leaves, replacement.ts) holds no parameters.
    if (!w || isIdentity(m, w)) return null;
    return { node, kind: 'attention', weightName: node.inputs[1], weight: w, transposed: false };
  }
  return null;
}

export function selectTargets(m: OnnxModel, includeLmHead: boolean): TargetSelection {
  const c = constantIndex(m);
  const producers = new Map<string, NodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) producers.set(o, n);
  const targets: QuantTarget[] = [];
  const skipped: string[] = [];
  const linear: LinearWeight[] = [];
  for (const node of m.nodes) {
    const label = node.name || node.outputs[0];
    const quantizedAlready = alreadyQuantized(m, node);
    if (quantizedAlready) {
      linear.push({ node: label, op: node.opType, weight: node.inputs[1], params: quantizedAlready.params, lmHead: isLmHead(m, node, node.inputs[1]), status: 'prequantized', reason: quantizedAlready.how });
      continue;
    }
    const cand = candidateOf(m, node, c, producers);
    if (!cand) continue;
    const { weight, weightName } = cand;
    // Attention's graph outputs are its present key/value, never logits.
    const lmHead = cand.kind !== 'attention' && isLmHead(m, node, weightName);
    const params = weight.dims.reduce((a, b) => a * b, 1);
    const dtype = FLOAT_TYPES[weight.dataType];
    let reason: string | null = null;
    if (cand.refuse) reason = cand.refuse;
    else if (weight.dims.length !== 2) reason = `weight ${weightName} is ${weight.dims.length}-D`;
    else if (!dtype) reason = `weight ${weightName} has data type ${weight.dataType}`;
    else if (lmHead && !includeLmHead) reason = 'lm_head';
    const entry: LinearWeight = { node: label, op: node.opType, weight: weightName, params, lmHead, status: reason ? 'float' : 'quantized' };
    if (reason) {
      entry.reason = reason;
      skipped.push(`${label} (${reason})`);
      linear.push(entry);
      continue;
    }
    linear.push(entry);
    const [r, s] = weight.dims;
    targets.push({ ...cand, activation: node.inputs[0], constantNode: c.node(weightName), K: cand.transposed ? s : r, N: cand.transposed ? r : s, dtype: dtype! });
  }
  return { targets, skipped, linear };
}
