/**
 * Recognise an activation function in a graph by what it computes, not by names: collect the
 * elementwise cone that ends at a tensor (ops whose other operands are scalar constants), require
 * that it reads exactly one tensor x, evaluate the cone at sample points in float64, and compare
 * with the known activations (activation-functions.ts). So SiLU as Mul(x, Sigmoid(x)) in either
 * order, GELU written with Erf or with the tanh formula in any op order, the `Gelu` op, the
 * com.microsoft FastGelu / BiasGelu / QuickGelu ops and ReLU are all found the same way.
 */
import type { NodeInfo } from './model-reader.ts';
import { ACTIVATIONS, erf, identifyActivation, type ActivationKind } from './activation-functions.ts';
import { constantDims, scalarConstant, type GraphIndex } from './graph-index.ts';

export interface RecognisedActivation {
  kind: ActivationKind;
  /** The tensor the activation reads (the gate / fc1 output). */
  input: string;
  /** A fused op's bias (FastGelu / BiasGelu input 1): the activation is act(input + bias). */
  bias?: string;
  /** The ops of the subgraph, in graph order (e.g. "Sigmoid+Mul", "FastGelu"). */
  ops: string;
}

type Unary = (x: number, n: NodeInfo) => number;
const sig = (x: number) => 1 / (1 + Math.exp(-x));
const attrF = (n: NodeInfo, k: string, d: number) => (n.attributes[k]?.type === 'float' ? (n.attributes[k].value as number) : d);
const UNARY: Record<string, Unary> = {
  Tanh: Math.tanh,
  Erf: erf,
  Sigmoid: sig,
  Neg: (x) => -x,
  Sqrt: Math.sqrt,
  Exp: Math.exp,
  Abs: Math.abs,
  Reciprocal: (x) => 1 / x,
  Softplus: (x) => Math.log1p(Math.exp(x)),
  Relu: (x) => Math.max(0, x),
  Identity: (x) => x,
  Cast: (x) => x,
  Gelu: (x, n) => (n.attributes.approximate?.value === 'tanh' ? ACTIVATIONS.gelu_tanh(x) : ACTIVATIONS.gelu(x)),
  FastGelu: ACTIVATIONS.gelu_tanh,
  BiasGelu: ACTIVATIONS.gelu,
  QuickGelu: (x, n) => x * sig(attrF(n, 'alpha', 1.702) * x),
};
const BINARY: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
};
/** Fused ops whose input 1 is a bias vector added before the activation. */
const FUSED_BIAS = new Set(['FastGelu', 'BiasGelu']);
const MAX_CONE = 40;

/** Inputs of `n` that belong to the cone (not scalar constants, not a fused bias), or null if `n` cannot be in a cone. */
function coneInputs(g: GraphIndex, n: NodeInfo): string[] | null {
  if (n.opType === 'Cast') {
    const to = n.attributes.to?.value;
    if (to !== 1 && to !== 10 && to !== 11 && to !== 16) return null; // float types only
  }
  if (UNARY[n.opType]) {
    const extra = n.inputs.slice(1).filter(Boolean);
    if (extra.length === 0) return [n.inputs[0]];
    if (FUSED_BIAS.has(n.opType) && extra.length === 1 && constantDims(g, extra[0])?.length === 1) return [n.inputs[0]];
    return null;
  }
  if (BINARY[n.opType]) {
    const live = n.inputs.filter((i) => scalarConstant(g, i) === null);
    // A non-scalar constant operand (a bias vector) ends the cone: that node computes x, not act(x).
    if (live.some((i) => constantDims(g, i) !== null)) return null;
    return live;
  }
  return null;
}

interface Cone {
  nodes: NodeInfo[];
  leaves: Set<string>;
  /** Every tensor visited, leaves included. */
  seen: Set<string>;
}

/** The elementwise cone ending at `t`, stopping at `stop` tensors; null when it grows past MAX_CONE. */
function expandCone(g: GraphIndex, t: string, stop?: string): Cone | null {
  const nodes = new Set<NodeInfo>();
  const leaves = new Set<string>();
  const seen = new Set<string>();
  const stack = [t];
  while (stack.length) {
    const name = stack.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    const p = name === stop ? undefined : g.producer.get(name);
    const inputs = p ? coneInputs(g, p) : null;
    if (!p || !inputs || inputs.length === 0) {
      leaves.add(name);
      continue;
    }
    nodes.add(p);
    if (nodes.size > MAX_CONE) return null;
    stack.push(...inputs);
  }
  return { nodes: [...nodes].sort((a, b) => g.order.get(a)! - g.order.get(b)!), leaves, seen };
}

/**
 * Single-input cones ending at `t`, largest first. The whole cone comes first; when it reads
 * several tensors because a linear output was itself rescaled elementwise (dynamic quantization:
 * Cast(MatMulInteger) × scale), each inner tensor is tried as the activation's input instead.
 */
function* singleInputCones(g: GraphIndex, t: string): Generator<{ nodes: NodeInfo[]; leaf: string }> {
  const full = expandCone(g, t);
  if (!full) return;
  const single = (c: Cone | null) => (c && c.leaves.size === 1 && c.nodes.length > 0 ? { nodes: c.nodes, leaf: [...c.leaves][0] } : null);
  const whole = single(full);
  if (whole) {
    yield whole;
    return;
  }
  const inner = [...full.seen]
    .filter((x) => x !== t && !full.leaves.has(x))
    .map((x) => single(expandCone(g, t, x)))
    .filter((c): c is { nodes: NodeInfo[]; leaf: string } => c !== null)
    .sort((a, b) => b.nodes.length - a.nodes.length);
  yield* inner;
}

/** Evaluate the cone at x (float64), reading scalar constants from the graph. */
function coneFunction(g: GraphIndex, nodes: NodeInfo[], leaf: string, out: string): (x: number) => number {
  const consts = new Map<string, number>();
  for (const n of nodes) for (const i of n.inputs) {
    const c = scalarConstant(g, i);
    if (c !== null) consts.set(i, c);
  }
  return (x) => {
    const v = new Map<string, number>(consts);
    v.set(leaf, x);
    for (const n of nodes) {
      const u = UNARY[n.opType];
      const r = u ? u(v.get(n.inputs[0])!, n) : BINARY[n.opType](v.get(n.inputs[0])!, v.get(n.inputs[1])!);
      v.set(n.outputs[0], r);
    }
    return v.get(out)!;
  };
}

/** What activation `t` is the output of, or null if it is not one of the known activations. */
export function recogniseActivation(g: GraphIndex, t: string): RecognisedActivation | null {
  for (const cone of singleInputCones(g, t)) {
    const kind = identifyActivation(coneFunction(g, cone.nodes, cone.leaf, t));
    if (!kind) continue;
    const fused = cone.nodes.find((n) => FUSED_BIAS.has(n.opType) && n.inputs[1]);
    return { kind, input: cone.leaf, bias: fused?.inputs[1], ops: cone.nodes.map((n) => n.opType).join('+') };
  }
  return null;
}
