/**
 * Producer / consumer / constant lookups over an OnnxModel's node list, built once, for structural
 * analysis (MLP activation search). Constant scalars are read on demand (one tiny tensor at a time).
 */
import type { NodeInfo, OnnxModel, TensorInfo } from './model-reader.ts';
import { readTensorFloat32 } from './model-reader.ts';
import { DTYPE } from './dtypes.ts';

export interface GraphIndex {
  model: OnnxModel;
  producer: Map<string, NodeInfo>;
  consumers: Map<string, NodeInfo[]>;
  /** Node → its position in the graph (ONNX node lists are topologically sorted). */
  order: Map<NodeInfo, number>;
  /** Initializers and Constant-node tensors by name. */
  constants: Map<string, TensorInfo | number>;
}

export function indexGraph(m: OnnxModel): GraphIndex {
  const producer = new Map<string, NodeInfo>();
  const consumers = new Map<string, NodeInfo[]>();
  const order = new Map<NodeInfo, number>();
  const constants = new Map<string, TensorInfo | number>(m.initializers);
  m.nodes.forEach((n, i) => {
    order.set(n, i);
    for (const o of n.outputs) producer.set(o, n);
    for (const x of n.inputs) {
      if (!x) continue;
      const list = consumers.get(x);
      if (list) list.push(n);
      else consumers.set(x, [n]);
    }
    if (n.opType === 'Constant') {
      const v = n.attributes.value;
      const f = n.attributes.value_float;
      if (v?.type === 'tensor') constants.set(n.outputs[0], v.value);
      else if (f?.type === 'float') constants.set(n.outputs[0], f.value);
    }
  });
  return { model: m, producer, consumers, order, constants };
}

/** Every tensor `start` depends on (itself included) and the nodes that produce them. */
export function upstreamOf(producer: Map<string, NodeInfo>, start: string): { tensors: Set<string>; nodes: Set<NodeInfo> } {
  const tensors = new Set<string>();
  const nodes = new Set<NodeInfo>();
  const stack = [start];
  while (stack.length) {
    const t = stack.pop()!;
    if (tensors.has(t)) continue;
    tensors.add(t);
    const p = producer.get(t);
    if (!p) continue;
    nodes.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  return { tensors, nodes };
}

export function isConstant(g: GraphIndex, name: string): boolean {
  return g.constants.has(name);
}

/** Dims of a constant tensor ([] for a scalar), or null when `name` is not a constant. */
export function constantDims(g: GraphIndex, name: string): number[] | null {
  const c = g.constants.get(name);
  if (c === undefined) return null;
  return typeof c === 'number' ? [] : c.dims;
}

const FLOAT_TYPES = new Set<number>([DTYPE.float, DTYPE.float16, DTYPE.bfloat16, DTYPE.double]);

/** The value of a one-element float constant, or null (not constant, not float, or not one element). */
export function scalarConstant(g: GraphIndex, name: string): number | null {
  const c = g.constants.get(name);
  if (c === undefined) return null;
  if (typeof c === 'number') return c;
  if (c.dims.reduce((a, b) => a * b, 1) !== 1 || !FLOAT_TYPES.has(c.dataType)) return null;
  const v = readTensorFloat32(g.model, c);
  return v.length === 1 ? v[0] : null;
}
