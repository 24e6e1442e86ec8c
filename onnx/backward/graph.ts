/**
 * The attribution graph: the forward model plus, for one captured activation tensor T,
 *   inputs   `T__override` (replaces T for everything downstream) and `target_ids` int64 [batch],
 *   outputs  `objective` [batch] = log_softmax(logits[b, last, :])[target_ids[b]],
 *            `T__grad` = d(Σ_b objective[b]) / d T__override (rows are independent, so row b's
 *            slice is row b's own gradient), and `T__original` (T as the model computed it).
 *            Target ids FORWARD_ONLY_TARGET (-1) ask for the forward outputs only: `T__grad` is
 *            then empty and the reverse sweep does not run (backward-branch.ts).
 * Reverse mode runs over the nodes between the override and the logits only; weights never get
 * gradients. Contrib ops without a rule are differentiated through a standard-op decomposition
 * (decompose.ts). An op on that path with neither aborts the build (QuantlensError GRADIENT)
 * before anything runs, so a wrong gradient is never computed silently.
 *
 * The model is not decoded and re-encoded: every field is copied verbatim except the node that
 * produces T (its output is renamed to `T__original`, and an Identity `T__override` → T follows
 * it) and, when asked (weights: 'referenced', as the salience path does), the initializers, which
 * become references into the model's own file (weight-references.ts), so the graph holds no weight; the backward nodes, new inputs and
 * outputs are appended to the graph message. Quantized weights are dequantized inside the graph
 * (dequantize-graph.ts) and stored weights are read behind runtime gates (GradEmitter.gate).
 */
import { QuantlensError } from '../../core/errors.ts';
import path from 'node:path';
import { appendGraphFragment, encodeNode, encodeRankedValueInfo } from '../builder.ts';
import { defaultOpset, readOnnxModel, scanFields, type NodeInfo, type OnnxModel, constantTensor, readTensorBytes } from '../model-reader.ts';
import { DTYPE } from '../dtypes.ts';
import { fields, ProtoWriter, str } from '../wire.ts';
import { FLOAT_TYPES, GradEmitter, TARGET_INPUT, floatTensor, type EmittedNode, type TensorMeta } from './emitter.ts';
import { decomposePath, notDecomposedError, type Expansion } from './decompose.ts';
import type { GradRule } from './rule.ts';
import { ortTypeOf, probeTensors, type FeedBuilder, type ProbedTensor } from './probe.ts';
import { ruleFor } from './rules.ts';
import { collapseQuantizedUnits } from './quantized-patterns.ts';
import { initializersByStart, rewrittenInitializer, type WeightMode } from './weight-references.ts';
import { lastPositionTail, type LastPositionTail } from './last-position.ts';
import { PROBE_BATCH } from './probe.ts';
import { upstreamOf } from '../graph-index.ts';
import { FORWARD_ONLY_TARGET, splitBackward, withLocalSlices, writeBackwardBranch } from './backward-branch.ts';

export { TARGET_INPUT, FORWARD_ONLY_TARGET };
export const OBJECTIVE_OUTPUT = 'objective';
export const overrideName = (t: string) => `${t}__override`;
export const originalName = (t: string) => `${t}__original`;
export const gradName = (t: string) => `${t}__grad`;

export interface AttributionGraphOptions {
  /** Captured activation tensors to attribute; one graph per tensor (pass exactly one). */
  layerTensors: string[];
  objective?: 'log-softmax-at-last';
  /** Logits output name (default: the output named "logits", else the first output). */
  logits?: string;
  /** Folder of external initializer data when the model has it (default: the model's folder). */
  externalDataDir?: string;
  /** Feeds for the probe batch (2 rows, 5 positions) when the model's inputs need them built by hand. */
  feeds?: FeedBuilder;
  /**
   * How the graph carries the weights (weight-references.ts): 'verbatim' (default) as the model
   * does; 'referenced' points into the model's own files (no weight in the graph; sessions need
   * `externalDataDirOf`); 'embedded' copies them all in.
   */
  weights?: WeightMode;
  /**
   * Run the position-wise nodes before the logits (final norm, LM head, …) at the last position
   * only (last-position.ts; default true). The graph's logits output is then [batch, 1, vocab].
   */
  lastPosition?: boolean;
  /**
   * The reverse sweep behind an If (backward-branch.ts; default true), so runs whose target ids
   * are FORWARD_ONLY_TARGET skip it; false: the backward nodes run on every run, as before.
   */
  backwardBranch?: boolean;
}

export interface AttributionGraphInfo {
  tensor: string;
  logits: string;
  /** Nodes on the override → logits path the reverse sweep runs through, in order. */
  pathNodes: NodeInfo[];
  /** Backward nodes emitted. */
  backwardNodeCount: number;
  /** Path nodes replaced by their standard-op decomposition (decompose.ts) for the gradient. */
  decomposed: NodeInfo[];
  /** Element type and probe shape (batch 2, sequence 5) of the tensor. */
  tensorMeta: TensorMeta;
  /** Probe shape of the logits [2, 5, vocab] ([2, 1, vocab] with a last-position tail). */
  logitsShape: number[];
  /** Nodes before the logits run at the last position only (last-position.ts); 0 when none. */
  tailNodes: number;
}

/** Read an int64/int32 constant (initializer or Constant node), or undefined when not constant. */
function constInts(m: OnnxModel, name: string): number[] | undefined {
  const t = constantTensor(m, name);
  if (!t) return undefined;
  const b = readTensorBytes(m, t);
  const a = b.byteOffset % 8 === 0 ? b : b.slice();
  if (t.dataType === DTYPE.int64) return Array.from(new BigInt64Array(a.buffer, a.byteOffset, a.length / 8), Number);
  if (t.dataType === DTYPE.int32) return Array.from(new Int32Array(a.buffer, a.byteOffset, a.length / 4));
  return undefined;
}

const ONNX_CODE: Record<string, number> = { float32: DTYPE.float, float16: DTYPE.float16, float64: DTYPE.double, int64: DTYPE.int64 };

/**
 * Where ORT should look for external initializer files when the model or its attribution graph
 * is loaded from bytes: the model's folder (graphs reference the model's file itself, see
 * weight-references.ts), unless the caller names one.
 */
export function externalDataDirOf(m: OnnxModel, opts: { externalDataDir?: string }): string | undefined {
  if (opts.externalDataDir) return opts.externalDataDir;
  return m.path ? path.dirname(m.path) : undefined;
}

export async function buildAttributionGraph(model: OnnxModel | string, opts: AttributionGraphOptions): Promise<Uint8Array> {
  return (await buildAttributionGraphWithInfo(model, opts)).bytes;
}

export async function buildAttributionGraphWithInfo(
  model: OnnxModel | string,
  opts: AttributionGraphOptions,
): Promise<{ bytes: Uint8Array; info: AttributionGraphInfo }> {
  const m = typeof model === 'string' ? readOnnxModel(model) : model;
  try {
    return await build(m, opts);
  } finally {
    if (typeof model === 'string') m.source.close();
  }
}

interface Request {
  T: string;
  opset: number;
  producer: NodeInfo;
  logits: string;
  where: string;
}

function checkRequest(m: OnnxModel, opts: AttributionGraphOptions): Request {
  const where = m.path ?? 'model bytes';
  if ((opts.objective ?? 'log-softmax-at-last') !== 'log-softmax-at-last') {
    throw new QuantlensError('CONFIG', `unknown attribution objective "${opts.objective}"`);
  }
  if (opts.layerTensors.length !== 1) {
    throw new QuantlensError('UNSUPPORTED', `an attribution graph overrides exactly one tensor; got ${opts.layerTensors.length} (build one graph per layer)`);
  }
  const T = opts.layerTensors[0];
  const opset = defaultOpset(m);
  // Range, ScatterElements and Slice/Pad with tensor inputs, which the rules emit, exist from opset 11.
  if (opset < 11) throw new QuantlensError('UNSUPPORTED', `backward graphs need ai.onnx opset >= 11; the model has ${opset}`, where);
  const producer = m.nodes.find((n) => n.outputs.includes(T));
  if (!producer) throw new QuantlensError('MODEL', `no node produces tensor "${T}"`, where);
  const logits = opts.logits ?? (m.outputs.find((o) => o.name === 'logits') ?? m.outputs[0])?.name;
  if (!logits || !m.outputs.some((o) => o.name === logits)) throw new QuantlensError('MODEL', `model has no output "${logits}"`, where);
  return { T, opset, producer, logits, where };
}

/** Forward cone of T (nodes reading it, transitively; any type) and backward cone of the logits. */
function cones(nodes: NodeInfo[], T: string, logits: string) {
  const cone = new Set<string>([T]);
  const coneNodes: NodeInfo[] = [];
  for (const n of nodes) {
    if (n.inputs.some((i) => cone.has(i))) {
      coneNodes.push(n);
      for (const o of n.outputs) if (o) cone.add(o);
    }
  }
  const producerOf = new Map<string, NodeInfo>();
  for (const n of nodes) for (const o of n.outputs) if (o) producerOf.set(o, n);
  return { coneNodes, producerOf, toLogits: upstreamOf(producerOf, logits).tensors };
}

type Lookup = (name: string) => TensorMeta | undefined;

function metaLookup(m: OnnxModel, ...probes: Map<string, TensorMeta>[]): Lookup {
  return (name) => {
    for (const p of probes) {
      const v = p.get(name);
      if (v) return v;
    }
    const init = m.initializers.get(name);
    if (init) return { type: ortTypeOf(init.dataType), shape: init.dims };
    return undefined;
  };
}

const isFloat = (lookup: Lookup, t: string) => FLOAT_TYPES.has(lookup(t)?.type ?? '');

/** Active = depends on the override through float tensors; useful = active and reaches the logits. */
function selectPath(m: OnnxModel, coneNodes: NodeInfo[], toLogits: Set<string>, lookup: Lookup, r: Request) {
  const active = new Set<string>([r.T]);
  for (const n of coneNodes) {
    if (!n.inputs.some((i) => active.has(i))) continue;
    for (const o of n.outputs) if (o && isFloat(lookup, o)) active.add(o);
  }
  if (!active.has(r.logits)) throw new QuantlensError('GRADIENT', `logits "${r.logits}" do not depend on "${r.T}"`, r.where);
  const useful = new Set([...active].filter((t) => toLogits.has(t)));
  // Quantized linear layers become one straight-through node each (quantized-patterns.ts).
  const { nodes, rules } = collapseQuantizedUnits(
    m,
    coneNodes.filter((n) => n.inputs.some((i) => active.has(i)) && n.outputs.some((o) => useful.has(o))),
    active,
    r.T,
  );
  return { pathNodes: nodes, unitRules: rules, active, useful };
}

/**
 * Put each decomposed node's decomposition in its place on the path: the decomposed nodes that
 * depend on the override and lead to a useful output, then the links to the original outputs.
 */
function splice(pathNodes: NodeInfo[], x: Expansion, active: Set<string>, useful: Set<string>, lookup: Lookup): NodeInfo[] {
  const out: NodeInfo[] = [];
  for (const node of pathNodes) {
    const r = x.replaced.get(node);
    if (!r) {
      out.push(node);
      continue;
    }
    for (const k of r.missing) if (useful.has(node.outputs[k])) throw notDecomposedError(node, k);
    for (const n of r.nodes) {
      if (!n.inputs.some((i) => active.has(i))) continue;
      for (const o of n.outputs) if (o && isFloat(lookup, o)) active.add(o);
    }
    const links = r.links.filter((l) => useful.has(l.outputs[0]) && active.has(l.inputs[0]));
    const needed = new Set(links.map((l) => l.inputs[0]));
    for (let k = r.nodes.length - 1; k >= 0; k--) {
      const n = r.nodes[k];
      if (n.outputs.some((o) => needed.has(o))) for (const i of n.inputs) if (i && active.has(i)) needed.add(i);
    }
    for (const n of r.nodes) {
      if (!n.inputs.some((i) => active.has(i)) || !n.outputs.some((o) => needed.has(o))) continue;
      out.push(n);
      for (const o of n.outputs) if (needed.has(o)) useful.add(o);
    }
    out.push(...links);
  }
  return out;
}

/**
 * On the probe batch, every decomposed output must equal what ORT's kernel computed for the model
 * (the unit tests check each decomposition on random inputs; this catches a configuration they did
 * not cover). Tolerance: 1e-4 of the output's scale in float32, 1e-2 in float16.
 */
function checkAgainstKernel(x: Expansion, probed: Map<string, ProbedTensor>, where: string): void {
  for (const [node, r] of x.replaced) {
    for (const link of r.links) {
      const a = probed.get(link.outputs[0]);
      const b = probed.get(link.inputs[0])?.values;
      if (!a?.values || !b) continue;
      let scale = 0;
      let err = a.values.length === b.length ? 0 : Infinity;
      for (let i = 0; i < a.values.length && err !== Infinity; i++) {
        scale = Math.max(scale, Math.abs(a.values[i]));
        err = Math.max(err, Math.abs(a.values[i] - b[i]));
      }
      const rel = err / Math.max(scale, 1e-30);
      if (!(rel <= (a.type === 'float16' ? 1e-2 : 1e-4))) {
        throw new QuantlensError('GRADIENT', `${node.opType} (node ${node.name || node.outputs[0]}): its decomposition differs from ONNX Runtime's kernel on the probe batch (relative error ${rel.toExponential(2)}); not supported`, where);
      }
    }
  }
}

/** The objective log_softmax(logits[:, last])[target] and its gradient at the logits. */
function emitObjective(e: GradEmitter, logits: string, where: string): { dLogits: string; ltype: string; logitsShape: number[] } {
  const lMeta = e.meta(logits);
  if (lMeta.shape.length !== 3) throw new QuantlensError('MODEL', `logits "${logits}" have rank ${lMeta.shape.length}, expected [batch, sequence, vocab]`, where);
  const ltype = lMeta.type;
  const last = e.squeeze(e.op1('Slice', [logits, e.i64([-1]), e.i64([Number.MAX_SAFE_INTEGER]), e.i64([1])]), [1]);
  const logProbs = e.op1('LogSoftmax', [last], { axis: -1 });
  const objective = e.squeeze(e.op1('GatherElements', [logProbs, e.unsqueeze(TARGET_INPUT, [1])], { axis: 1 }), [1]);
  e.nodes.push({ opType: 'Identity', inputs: [objective], outputs: [OBJECTIVE_OUTPUT], attrs: {}, name: '/quantlens/objective', domain: '' });
  const logitsShape = e.shape(logits);
  const vocab = e.op1('Slice', [logitsShape, e.i64([2]), e.i64([3])]);
  const oneHot = e.op1('OneHot', [TARGET_INPUT, vocab, e.constTensor(floatTensor(ltype, [2], [0, 1]))], { axis: -1 });
  const dLast = e.op1('Sub', [oneHot, e.op1('Exp', [logProbs])]); // d log p_t / d logits = onehot − softmax
  const before = e.op1('Sub', [e.op1('Slice', [logitsShape, e.i64([1]), e.i64([2])]), e.i64([1])]);
  const zero1 = e.i64([0]);
  const pads = e.op1('Concat', [zero1, before, zero1, zero1, zero1, zero1], { axis: 0 });
  const dLogits = e.op1('Pad', [e.unsqueeze(dLast, [1]), pads], { mode: 'constant' });
  return { dLogits, ltype, logitsShape: lMeta.shape };
}

/** Reverse sweep over the path; returns the gradient tensor of T, or null when none reached it. */
function reverseSweep(
  pathNodes: NodeInfo[],
  e: GradEmitter,
  seed: { tensor: string; grad: string },
  sets: { active: Set<string>; useful: Set<string> },
  ruleOf: (n: NodeInfo) => GradRule,
  ints: (name: string) => number[] | undefined,
  T: string,
): string | null {
  const contributions = new Map<string, string[]>([[seed.tensor, [seed.grad]]]);
  const gradOf = (t: string): string | null => {
    const parts = contributions.get(t);
    if (!parts || parts.length === 0) return null;
    if (parts.length > 1) contributions.set(t, [e.op1('Sum', parts)]);
    return contributions.get(t)![0];
  };
  for (let k = pathNodes.length - 1; k >= 0; k--) {
    const node = pathNodes[k];
    const gy = node.outputs.map((o) => (sets.useful.has(o) ? gradOf(o) : null));
    if (gy.every((g) => g === null)) continue;
    const needs = node.inputs.map((i) => i !== '' && sets.active.has(i));
    const gx = ruleOf(node)({ node, gy, needs, e, constInts: ints });
    node.inputs.forEach((inp, i) => {
      if (!needs[i] || !gx[i]) return;
      const list = contributions.get(inp) ?? [];
      list.push(gx[i]!);
      contributions.set(inp, list);
    });
  }
  return gradOf(T);
}

/** Every entry of the tail is [batch, sequence, …] on the probe; else the tail is not used. */
function tailFits(tail: LastPositionTail, lookup: Lookup): boolean {
  return [...tail.sliced.keys()].every((x) => {
    const meta = lookup(x);
    return meta?.shape.length === 3 && meta.shape[1] === PROBE_BATCH.seqLen && meta.shape[0] === PROBE_BATCH.ids.length;
  });
}

async function build(m: OnnxModel, opts: AttributionGraphOptions): Promise<{ bytes: Uint8Array; info: AttributionGraphInfo }> {
  const r = checkRequest(m, opts);
  const { T, logits, where } = r;
  const tail = opts.lastPosition === false ? null : lastPositionTail(m, T, logits, r.opset, (name) => constInts(m, name));
  // The analysis sees the model as the graph will compute it: the tail reading the sliced entries.
  const mm: OnnxModel = tail ? { ...m, nodes: tail.nodes } : m;
  const { coneNodes, producerOf, toLogits } = cones(mm.nodes, T, logits);

  // Probe types/ranks of the cone and of everything its nodes read.
  const wanted = new Set<string>([T, logits]);
  for (const n of coneNodes) {
    for (const o of n.outputs) if (o) wanted.add(o);
    for (const i of n.inputs) if (i && producerOf.has(i)) wanted.add(i);
  }
  // The probes run the model as the graph will reference its weights (no copy of them in JS).
  const mode = opts.weights ?? 'verbatim';
  for (const x of tail?.sliced.keys() ?? []) wanted.add(x);
  const bytes = writeModel(m, mode, undefined, tail);
  const externalDataDir = externalDataDirOf(m, opts);
  // A tail whose entries are not [batch, sequence, …] (ORT may refuse the Slice on a lower rank)
  // is not used: the graph is built as before (tailNodes 0).
  const firstProbe = await probeTensors(m, bytes, [...wanted], { externalDataDir, feeds: opts.feeds }).catch((err) => {
    if (tail) return null;
    throw err;
  });
  if (!firstProbe) return build(m, { ...opts, lastPosition: false });
  let lookup = metaLookup(m, firstProbe);
  if (tail && !tailFits(tail, lookup)) return build(m, { ...opts, lastPosition: false });
  const tMeta = lookup(T);
  if (!tMeta || !FLOAT_TYPES.has(tMeta.type)) throw new QuantlensError('GRADIENT', `tensor "${T}" is ${tMeta?.type ?? 'of unknown type'}, not a float tensor`, where);
  const { pathNodes: selected, unitRules, active, useful } = selectPath(mm, coneNodes, toLogits, lookup, r);

  // Contrib ops without a rule are replaced on the path by their decompositions (decompose.ts);
  // a second probe gives the types/ranks of the decomposed tensors.
  const ints = (name: string) => tail?.intConstants.get(name) ?? constInts(m, name);
  const forward = new GradEmitter(r.opset, lookup, '/quantlens/decomp');
  const hasRule = (n: NodeInfo) => unitRules.has(n) || !!ruleFor(n.opType, n.domain);
  const expansion = decomposePath(selected, hasRule, forward, ints);
  let pathNodes = selected;
  if (expansion.replaced.size > 0) {
    const probeBytes = appendGraphFragment(bytes, { nodes: forward.nodes });
    const links = [...expansion.replaced.values()].flatMap((x) => x.links);
    const keepValues = new Set(links.flatMap((l) => [l.inputs[0], l.outputs[0]]));
    const decomposed = [...forward.nodes.flatMap((n) => n.outputs), ...keepValues];
    const probed = await probeTensors(m, probeBytes, decomposed, { externalDataDir, feeds: opts.feeds, keepValues });
    checkAgainstKernel(expansion, probed, where);
    lookup = metaLookup(m, probed, firstProbe);
    pathNodes = splice(selected, expansion, active, useful, lookup);
  }
  for (const n of pathNodes) {
    if (!unitRules.has(n) && !ruleFor(n.opType, n.domain)) throw new QuantlensError('GRADIENT', `no gradient rule for ${n.opType} (node ${n.name || n.outputs[0]})`, where);
  }

  // Stored = an initializer or a Constant node's output (producerOf covers every node).
  const e = new GradEmitter(r.opset, lookup, undefined, (name) => m.initializers.has(name) || producerOf.get(name)?.opType === 'Constant');
  const { dLogits, ltype, logitsShape } = emitObjective(e, logits, where);
  const allInts = (name: string) => expansion.intConstants.get(name) ?? ints(name);
  const ruleOf = (n: NodeInfo) => unitRules.get(n) ?? ruleFor(n.opType, n.domain)!;
  const gT = reverseSweep(pathNodes, e, { tensor: logits, grad: dLogits }, { active, useful }, ruleOf, allInts, T);
  if (!gT) throw new QuantlensError('GRADIENT', `no gradient reached "${T}" from "${logits}"`, where);
  const branch = opts.backwardBranch ?? true;
  if (!branch) e.nodes.push({ opType: 'Identity', inputs: [gT], outputs: [gradName(T)], attrs: {}, name: '/quantlens/grad_output', domain: '' });

  const out = writeModel(m, mode, { producer: r.producer, T, tMeta, objectiveType: ltype, nodes: [...pruneUnread(forward.nodes, e.nodes), ...e.nodes], grad: branch ? gT : undefined }, tail);
  return { bytes: out, info: { tensor: T, logits, pathNodes, backwardNodeCount: e.nodes.length, decomposed: [...expansion.replaced.keys()], tensorMeta: tMeta, logitsShape, tailNodes: tail?.size ?? 0 } };
}

/**
 * The decomposed forward nodes the backward nodes actually read (transitively). The rest (a
 * decomposition's own outputs, constants a branch did not need) would only cost run time.
 */
function pruneUnread(forward: EmittedNode[], backward: EmittedNode[]): EmittedNode[] {
  const read = new Set(backward.flatMap((n) => n.inputs));
  const kept: EmittedNode[] = [];
  for (let k = forward.length - 1; k >= 0; k--) {
    const n = forward[k];
    if (!n.outputs.some((o) => read.has(o))) continue;
    kept.push(n);
    for (const i of n.inputs) read.add(i);
  }
  return kept.reverse();
}

/** What the attribution graph adds to the model's graph (writeModel without it: the model alone). */
interface GraphEdit {
  producer: NodeInfo;
  T: string;
  tMeta: TensorMeta;
  objectiveType: string;
  nodes: EmittedNode[];
  /** With a backward branch: the gradient tensor its nodes compute (backward-branch.ts); else the nodes write T__grad. */
  grad?: string;
}

/**
 * The model re-encoded field by field from its source (nothing decoded): initializers as `mode`
 * says (weight-references.ts), and with `edit`, the producer of T rewired to the override and the
 * backward nodes, inputs and outputs appended.
 */
function writeModel(m: OnnxModel, mode: WeightMode, edit?: GraphEdit, tail?: LastPositionTail | null): Uint8Array {
  const read = (start: number, end: number) => m.source.read(start, end - start);
  const inits = initializersByStart(m);
  const tailAt = new Map([...(tail?.renamed ?? [])].map(([n, r]) => [n.range[0], { n, r }]));
  // Declared shapes of tail tensors name the sequence dim; at one position they would contradict
  // it (ORT plans buffers by them): value_info entries are dropped, outputs keep type and rank.
  const tailOutputs = new Set([...(tail?.renamed.keys() ?? [])].flatMap((n) => n.outputs));
  const g = new ProtoWriter();
  for (const [start, end] of m.graphRanges) {
    for (const f of scanFields(m.source, start, end)) {
      const init = f.field === 5 ? inits.get(f.start) : undefined;
      const rewritten = init && rewrittenInitializer(m, init, mode);
      const inTail = f.field === 1 ? tailAt.get(f.start) : undefined;
      const declared = f.field === 12 || f.field === 13 ? valueInfoName(read(f.start, f.end)) : undefined;
      if (declared !== undefined && tailOutputs.has(declared)) {
        const out = m.outputs.find((o) => o.name === declared);
        if (f.field === 12 && out) g.message(12, (w) => encodeRankedValueInfo(w, declared, out.elemType ?? DTYPE.float, out.dims?.length ?? 3));
      } else if (rewritten) g.bytes(5, rewritten);
      else if (edit && f.field === 1 && f.start === edit.producer.range[0]) writeOverride(g, read(f.start, f.end), edit.T);
      else if (inTail) writeTailNode(g, read(f.start, f.end), inTail.r, tail!.slices.get(inTail.n) ?? []);
      else g.raw(read(f.fieldStart, f.end));
    }
  }
  if (edit) appendAttribution(g, edit, [...(tail?.slices.values() ?? [])].flat());
  const w = new ProtoWriter();
  let graphWritten = false;
  for (const f of scanFields(m.source, 0, m.size)) {
    if (f.field === 7) {
      if (!graphWritten) w.bytes(7, g.finish());
      graphWritten = true;
    } else {
      w.raw(read(f.fieldStart, f.end));
    }
  }
  return w.finish();
}

/** The name (field 1) of a ValueInfoProto. */
function valueInfoName(vb: Uint8Array): string | undefined {
  for (const f of fields(vb)) if (f.field === 1) return str(vb, f);
  return undefined;
}

/** A tail node reading its sliced entries (inputs in order), after the slices it is the first to read. */
function writeTailNode(g: ProtoWriter, nb: Uint8Array, renamed: NodeInfo, slices: EmittedNode[]): void {
  for (const n of slices) g.message(1, (nw) => encodeNode(nw, n));
  let k = 0;
  g.message(1, (nw) => {
    for (const nf of fields(nb)) {
      if (nf.field === 1) nw.string(1, renamed.inputs[k++]);
      else nw.raw(nb.subarray(nf.fieldStart, nf.end));
    }
  });
}

/** The producer, with T renamed to T__original; then T = Identity(T__override). */
function writeOverride(g: ProtoWriter, nb: Uint8Array, T: string): void {
  g.message(1, (nw) => {
    for (const nf of fields(nb)) {
      if (nf.field === 2 && str(nb, nf) === T) nw.string(2, originalName(T));
      else nw.raw(nb.subarray(nf.fieldStart, nf.end));
    }
  });
  g.message(1, (nw) => encodeNode(nw, { opType: 'Identity', inputs: [overrideName(T)], outputs: [T], name: '/quantlens/override' }));
}

function appendAttribution(g: ProtoWriter, { T, tMeta, objectiveType, nodes, grad }: GraphEdit, tailSlices: EmittedNode[]): void {
  const code = ONNX_CODE[tMeta.type];
  const { main, branch } = grad ? splitBackward(nodes, [OBJECTIVE_OUTPUT]) : { main: nodes, branch: [] };
  for (const n of main) g.message(1, (nw) => encodeNode(nw, n));
  if (grad) writeBackwardBranch(g, withLocalSlices(branch, tailSlices), grad, gradName(T), code, tMeta.shape.length);
  g.message(11, (w) => encodeRankedValueInfo(w, overrideName(T), code, tMeta.shape.length));
  g.message(11, (w) => encodeRankedValueInfo(w, TARGET_INPUT, DTYPE.int64, 1));
  g.message(12, (w) => encodeRankedValueInfo(w, OBJECTIVE_OUTPUT, ONNX_CODE[objectiveType], 1));
  g.message(12, (w) => encodeRankedValueInfo(w, gradName(T), code, tMeta.shape.length));
  g.message(12, (w) => encodeRankedValueInfo(w, originalName(T), code, tMeta.shape.length));
}
