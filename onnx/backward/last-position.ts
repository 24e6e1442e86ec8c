/**
 * The objective reads the logits at the last position only, so when the model's last nodes
 * before the logits act on each position alone (final norm, LM head, often the last MLP and its
 * residual), they need to run on that position only. The tail is the largest such set grown back
 * from the logits' producer: every node in it is position-wise (below), every output it makes is
 * read only by tail nodes (or is the logits), and it holds neither T's producer nor anything T
 * depends on. Each tensor the tail reads from outside (an entry, [batch, sequence, …]) is sliced
 * to its last position first; the tail then computes [batch, 1, …] and so do the logits output
 * and the backward pass through it (the reverse sweep differentiates the Slice like any other).
 * On a Llama at vocab 32000 this removes the [rows, sequence, vocab] logits, their gradient and
 * the LM head's two matrix products at every position but one.
 *
 * Position-wise (for a [batch, sequence, …] input): elementwise ops whose other operands are
 * constants of rank ≤ 1; MatMul by a 2-D constant and the 4-bit MatMuls (constant packed weight);
 * reductions and normalizations over the last axis only. No such node before the logits: no tail
 * (the graph is built as before, `tailNodes` 0 in the graph info).
 */
import { constantTensor, type NodeInfo, type OnnxModel } from '../model-reader.ts';
import { asNodeInfo } from './decompose.ts';
import { GradEmitter, type EmittedNode } from './emitter.ts';
import { indexGraph, upstreamOf } from '../graph-index.ts';

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sqrt', 'Reciprocal', 'Neg', 'Identity', 'Cast', 'Sigmoid', 'Tanh', 'Erf', 'Relu', 'Exp', 'Log', 'Abs', 'Gelu', 'FastGelu', 'QuickGelu']);
const LAST_AXIS_NORMS = new Set(['LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization', 'SkipSimplifiedLayerNormalization', 'SkipLayerNormalization']);
const PACKED_MATMULS = new Set(['MatMulNBits', 'MatMulBnb4']);
const REDUCTIONS = new Set(['ReduceMean', 'ReduceSum']);
/** Inner ops of the quantized units (quantized-patterns.ts): a tail must not cut a unit apart. */
const UNIT_INNER = new Set(['Cast', 'MatMulInteger', 'DynamicQuantizeLinear', 'QuantizeLinear', 'DequantizeLinear']);

export interface LastPositionTail {
  /** The model's nodes with the tail's inputs renamed to the sliced entries, and the slices added. */
  nodes: NodeInfo[];
  /** Tail node (the model's) → the same node reading sliced entries; writeModel re-encodes these. */
  renamed: Map<NodeInfo, NodeInfo>;
  /** Slice nodes (and their constants) to write before the first tail node that reads each entry. */
  slices: Map<NodeInfo, EmittedNode[]>;
  /** entry → its last-position slice. */
  sliced: Map<string, string>;
  intConstants: Map<string, number[]>;
  size: number;
}

function isConstant(m: OnnxModel, name: string, maxRank: number): boolean {
  const t = constantTensor(m, name);
  return !!t && t.dims.length <= maxRank;
}

function lastAxisOnly(m: OnnxModel, n: NodeInfo, ints: (name: string) => number[] | undefined, rank: number): boolean {
  const a = n.attributes.axes;
  const axes = a?.type === 'ints' ? (a.value as number[]) : n.inputs[1] ? ints(n.inputs[1]) : undefined;
  const keep = n.attributes.keepdims;
  const keepdims = keep?.type === 'int' ? keep.value : 1;
  return !!axes && axes.length === 1 && (axes[0] === -1 || axes[0] === rank - 1) && keepdims === 1;
}

/** Whether n acts on each position alone, reading `outside` (not constant) tensors as [B, S, …]. */
function positionWise(m: OnnxModel, n: NodeInfo, ints: (name: string) => number[] | undefined): boolean {
  if (n.outputs.length !== 1 && !LAST_AXIS_NORMS.has(n.opType)) return false;
  if (ELEMENTWISE.has(n.opType)) return n.inputs.every((i) => !i || !constantTensor(m, i) || isConstant(m, i, 1));
  if (n.opType === 'MatMul') return constantTensor(m, n.inputs[1])?.dims.length === 2 && !constantTensor(m, n.inputs[0]);
  if (PACKED_MATMULS.has(n.opType)) return n.inputs.slice(1).every((i) => !i || !!constantTensor(m, i));
  if (REDUCTIONS.has(n.opType)) return lastAxisOnly(m, n, ints, 3);
  if (LAST_AXIS_NORMS.has(n.opType)) {
    const axis = n.attributes.axis;
    const skipInputs = n.opType.startsWith('Skip') ? 2 : 1;
    return (axis?.type !== 'int' || axis.value === -1 || axis.value === 2) && n.inputs.slice(skipInputs).every((i) => !i || !!constantTensor(m, i));
  }
  return false;
}

/** The tail's node set: grown back from the logits' producer while the rule above holds. */
function growTail(m: OnnxModel, T: string, logits: string, ints: (name: string) => number[] | undefined): Set<NodeInfo> {
  const { producer: producerOf, consumers: readers } = indexGraph(m);
  const outputs = new Set(m.outputs.map((o) => o.name));
  // T and everything it depends on: the tail must leave them whole.
  const keep = upstreamOf(producerOf, T).nodes;
  const tail = new Set<NodeInfo>();
  const eligible = (n: NodeInfo) =>
    !keep.has(n) && positionWise(m, n, ints) && n.inputs.every((i) => !i || !UNIT_INNER.has(producerOf.get(i)?.opType ?? '')) &&
    n.outputs.every((o) => !o || ((o === logits || !outputs.has(o)) && (readers.get(o) ?? []).every((r) => tail.has(r))));
  const first = producerOf.get(logits);
  if (!first || !eligible(first)) return tail;
  tail.add(first);
  for (let grew = true; grew; ) {
    grew = false;
    for (const n of [...tail]) {
      for (const i of n.inputs) {
        const p = i ? producerOf.get(i) : undefined;
        if (p && !tail.has(p) && p.opType !== 'Constant' && eligible(p)) {
          tail.add(p);
          grew = true;
        }
      }
    }
  }
  return tail;
}

/**
 * The tail of `m` before `logits` (null when none): entries are sliced to [B, 1, …] by
 * Slice(x, −1, ∞, axis 1), emitted with `opset`'s forms.
 */
export function lastPositionTail(m: OnnxModel, T: string, logits: string, opset: number, ints: (name: string) => number[] | undefined): LastPositionTail | null {
  const tail = growTail(m, T, logits, ints);
  if (tail.size === 0) return null;
  const e = new GradEmitter(opset, () => undefined, '/quantlens/last_position');
  const sliced = new Map<string, string>();
  const slices = new Map<NodeInfo, EmittedNode[]>();
  const renamed = new Map<NodeInfo, NodeInfo>();
  const nodes: NodeInfo[] = [];
  const producedInTail = new Set([...tail].flatMap((n) => n.outputs));
  for (const n of m.nodes) {
    if (!tail.has(n)) {
      nodes.push(n);
      continue;
    }
    const before = e.nodes.length;
    const inputs = n.inputs.map((i) => {
      if (!i || producedInTail.has(i) || constantTensor(m, i)) return i;
      if (!sliced.has(i)) sliced.set(i, e.op1('Slice', [i, e.i64([-1]), e.i64([Number.MAX_SAFE_INTEGER]), e.i64([1])]));
      return sliced.get(i)!;
    });
    const added = e.nodes.slice(before);
    if (added.length) slices.set(n, added);
    nodes.push(...added.map(asNodeInfo));
    const r = { ...n, inputs };
    renamed.set(n, r);
    nodes.push(r);
  }
  return { nodes, renamed, slices, sliced, intConstants: e.intConstants, size: tail.size };
}
