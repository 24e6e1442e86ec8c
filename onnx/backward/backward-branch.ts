/**
 * The reverse sweep of an attribution graph behind an If node, so that a run fetching only
 * forward outputs (the layer's activation `T__original`, the logits) does not pay for it: ONNX
 * Runtime runs every node of a graph whatever the run fetches, so an activation-only run used to
 * cost a whole forward + backward.
 *
 *   If(min(target_ids) >= 0) then: the backward nodes → `T__grad`, else: an empty tensor [0, …]
 *   of the gradient's type and rank. A run whose target ids are FORWARD_ONLY_TARGET (< 0) thus
 *   computes no gradient; every other run gets it as before, so callers that feed real targets
 *   see no change. (The condition is read from an existing input: onnxruntime-node feeds only
 *   the session's declared inputs, which leave out an initializer-backed input with a default.)
 *
 * The objective (log_softmax at the target) and what it reads stay in the main graph, so it is
 * computed either way. The branch reads the forward tensors from the outer scope (ONNX implicit
 * inputs), the same tensors the backward nodes read before; the nodes and their order are
 * unchanged, so the gradient is the same computation.
 */
import { encodeNode, encodeRankedValueInfo, tensor } from '../builder.ts';
import { DTYPE } from '../dtypes.ts';
import type { ProtoWriter } from '../wire.ts';
import { TARGET_INPUT, type EmittedNode } from './emitter.ts';

/** Target id that asks for the forward outputs only (no gradient). */
export const FORWARD_ONLY_TARGET = -1;
const ATTR_GRAPH = 5;

/** The nodes `keep` depends on (in order; they stay in the main graph) and the rest (the branch). */
export function splitBackward(nodes: EmittedNode[], keep: string[]): { main: EmittedNode[]; branch: EmittedNode[] } {
  const needed = new Set(keep);
  const inMain = new Set<EmittedNode>();
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    if (!n.outputs.some((o) => needed.has(o))) continue;
    inMain.add(n);
    for (const i of n.inputs) needed.add(i);
  }
  return { main: nodes.filter((n) => inMain.has(n)), branch: nodes.filter((n) => !inMain.has(n)) };
}

/**
 * The branch with its own copy of each `slices` node whose output it reads (renamed inputs): a
 * main-graph Slice read by the branch, whose input the branch reads too, makes ORT's node-removal
 * checks (graph_utils CanRemoveNode) log a warning at every session creation, as the branch
 * already has a value of the name the Slice's output would be renamed to. The copies are the
 * last-position Slices (last-position.ts), [batch, 1, …] each: the same elements, a small copy.
 */
export function withLocalSlices(branch: EmittedNode[], slices: EmittedNode[]): EmittedNode[] {
  const produced = new Set(branch.flatMap((n) => n.outputs));
  const read = new Set(branch.flatMap((n) => n.inputs).filter((i) => i && !produced.has(i)));
  const local = new Map<string, string>();
  const copies: EmittedNode[] = [];
  for (const n of slices) {
    if (n.opType !== 'Slice' || !read.has(n.outputs[0])) continue;
    local.set(n.outputs[0], `${n.outputs[0]}__branch`);
    copies.push({ ...n, outputs: [`${n.outputs[0]}__branch`], name: `${n.name}__branch` });
  }
  if (copies.length === 0) return branch;
  return [...copies, ...branch.map((n) => ({ ...n, inputs: n.inputs.map((i) => local.get(i) ?? i) }))];
}

/** A GraphProto attribute (AttributeProto: name 1, g 6, type 20). */
function graphAttr(w: ProtoWriter, name: string, nodes: EmittedNode[], output: string, elemType: number, rank: number): void {
  w.string(1, name);
  w.message(6, (g) => {
    for (const n of nodes) g.message(1, (nw) => encodeNode(nw, n));
    g.string(2, name);
    g.message(12, (o) => encodeRankedValueInfo(o, output, elemType, rank));
  });
  w.varint(20, ATTR_GRAPH);
}

const DTYPE_NAME: Record<number, 'float' | 'float16' | 'double'> = { [DTYPE.float]: 'float', [DTYPE.float16]: 'float16', [DTYPE.double]: 'double' };

/**
 * Appends to graph `g`: the condition min(target_ids) > FORWARD_ONLY_TARGET and If(condition),
 * whose then-branch runs `branch` and returns `grad` as `output`, whose else-branch returns an
 * empty tensor.
 */
export function writeBackwardBranch(g: ProtoWriter, branch: EmittedNode[], grad: string, output: string, elemType: number, rank: number): void {
  const inner = `${output}__branch`;
  const empty = `${output}__skipped`;
  const cond = '/quantlens/backward/wanted';
  const min = '/quantlens/backward/min_target';
  const sentinel = '/quantlens/backward/forward_only';
  const condNodes: EmittedNode[] = [
    { opType: 'ReduceMin', inputs: [TARGET_INPUT], outputs: [min], attrs: { keepdims: 0 }, name: min, domain: '' },
    { opType: 'Constant', inputs: [], outputs: [sentinel], attrs: { value: { kind: 'tensor', v: tensor('int64', [], BigInt64Array.of(BigInt(FORWARD_ONLY_TARGET))) } }, name: sentinel, domain: '' },
    { opType: 'Greater', inputs: [min, sentinel], outputs: [cond], attrs: {}, name: cond, domain: '' },
  ];
  for (const n of condNodes) g.message(1, (nw) => encodeNode(nw, n));
  const thenNodes: EmittedNode[] = [...branch, { opType: 'Identity', inputs: [grad], outputs: [inner], attrs: {}, name: '/quantlens/backward/grad', domain: '' }];
  const zeros = new Array<number>(rank).fill(0);
  const elseNodes: EmittedNode[] = [{ opType: 'Constant', inputs: [], outputs: [empty], attrs: { value: { kind: 'tensor', v: tensor(DTYPE_NAME[elemType] ?? 'float', zeros, new Uint8Array(0)) } }, name: '/quantlens/backward/skipped', domain: '' }];
  g.message(1, (nw) => {
    nw.string(1, cond);
    nw.string(2, output);
    nw.string(3, '/quantlens/backward');
    nw.string(4, 'If');
    nw.message(5, (a) => graphAttr(a, 'then_branch', thenNodes, inner, elemType, rank));
    nw.message(5, (a) => graphAttr(a, 'else_branch', elseNodes, empty, elemType, rank));
  });
}
