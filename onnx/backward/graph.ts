/**
 * The attribution graph: the forward model plus, for one captured activation tensor T,
 *   inputs   `T__override` (replaces T for everything downstream) and `target_ids` int64 [batch],
 *   outputs  `objective` [batch] = log_softmax(logits[b, last, :])[target_ids[b]],
 *            `T__grad` = d(Σ_b objective[b]) / d T__override (rows are independent, so row b's
 *            slice is row b's own gradient), and `T__original` (T as the model computed it).
 * Reverse mode runs over the nodes between the override and the logits only; weights never get
 * gradients. An op on that path without a rule aborts the build (QuantlensError GRADIENT) before
 * anything runs, so a wrong gradient is never computed silently.
 *
 * The model is not decoded and re-encoded: every field is copied verbatim except the node that
 * produces T (its output is renamed to `T__original`, and an Identity `T__override` → T follows
 * it); the backward nodes, new inputs and outputs are appended to the graph message.
 */
import { QuantlensError } from '../../core/errors.ts';
import path from 'node:path';
import { encodeNode } from '../builder.ts';
import { readOnnxModel, scanFields, type NodeInfo, type OnnxModel, constantTensor, readTensorBytes } from '../model-reader.ts';
import { DTYPE } from '../dtypes.ts';
import { fields, ProtoWriter, str } from '../wire.ts';
import { FLOAT_TYPES, GradEmitter, floatTensor, type TensorMeta } from './emitter.ts';
import { ortTypeOf, probeTensors } from './probe.ts';
import { ruleFor } from './rules.ts';
import { collapseQuantizedUnits } from './quantized-patterns.ts';

export const TARGET_INPUT = 'target_ids';
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
}

export interface AttributionGraphInfo {
  tensor: string;
  logits: string;
  /** Forward nodes on the override → logits path, in order. */
  pathNodes: NodeInfo[];
  /** Backward nodes emitted. */
  backwardNodeCount: number;
  /** Element type and probe shape (batch 2, sequence 5) of the tensor. */
  tensorMeta: TensorMeta;
  /** Probe shape of the logits [2, 5, vocab]. */
  logitsShape: number[];
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

function encodeValueInfo(w: ProtoWriter, name: string, elemType: number, rank: number): void {
  w.string(1, name);
  w.message(2, (tp) =>
    tp.message(1, (tt) => {
      tt.varint(1, elemType);
      tt.message(2, (shape) => {
        for (let i = 0; i < rank; i++) shape.message(1, () => {});
      });
    }),
  );
}

const ONNX_CODE: Record<string, number> = { float32: DTYPE.float, float16: DTYPE.float16, float64: DTYPE.double, int64: DTYPE.int64 };

/** Where ORT should look for external initializer files when the model is loaded from bytes. */
export function externalDataDirOf(m: OnnxModel, opts: { externalDataDir?: string }): string | undefined {
  if (opts.externalDataDir) return opts.externalDataDir;
  const hasExternal = [...m.initializers.values()].some((t) => t.location.kind === 'external');
  return hasExternal && m.path ? path.dirname(m.path) : undefined;
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

async function build(m: OnnxModel, opts: AttributionGraphOptions): Promise<{ bytes: Uint8Array; info: AttributionGraphInfo }> {
  const where = m.path ?? 'model bytes';
  if ((opts.objective ?? 'log-softmax-at-last') !== 'log-softmax-at-last') {
    throw new QuantlensError('CONFIG', `unknown attribution objective "${opts.objective}"`);
  }
  if (opts.layerTensors.length !== 1) {
    throw new QuantlensError('UNSUPPORTED', `an attribution graph overrides exactly one tensor; got ${opts.layerTensors.length} (build one graph per layer)`);
  }
  const T = opts.layerTensors[0];
  const opset = m.opsets.find((o) => o.domain === '')?.version ?? 0;
  if (opset < 13) throw new QuantlensError('UNSUPPORTED', `backward graphs need opset >= 13; the model has ${opset}`, where);
  const producer = m.nodes.find((n) => n.outputs.includes(T));
  if (!producer) throw new QuantlensError('MODEL', `no node produces tensor "${T}"`, where);
  const logits = opts.logits ?? (m.outputs.find((o) => o.name === 'logits') ?? m.outputs[0])?.name;
  if (!logits || !m.outputs.some((o) => o.name === logits)) throw new QuantlensError('MODEL', `model has no output "${logits}"`, where);

  // Forward cone of T (any type) and backward cone of the logits.
  const cone = new Set<string>([T]);
  const coneNodes: NodeInfo[] = [];
  for (const n of m.nodes) {
    if (n.inputs.some((i) => cone.has(i))) {
      coneNodes.push(n);
      for (const o of n.outputs) if (o) cone.add(o);
    }
  }
  const producerOf = new Map<string, NodeInfo>();
  for (const n of m.nodes) for (const o of n.outputs) if (o) producerOf.set(o, n);
  const toLogits = new Set<string>();
  const stack = [logits];
  while (stack.length) {
    const t = stack.pop()!;
    if (toLogits.has(t)) continue;
    toLogits.add(t);
    const p = producerOf.get(t);
    if (p) for (const i of p.inputs) if (i) stack.push(i);
  }

  // Probe types/ranks of the cone and of everything its nodes read.
  const wanted = new Set<string>([T, logits]);
  for (const n of coneNodes) {
    for (const o of n.outputs) if (o) wanted.add(o);
    for (const i of n.inputs) if (i && producerOf.has(i)) wanted.add(i);
  }
  const bytes = m.source.read(0, m.size);
  const probed = await probeTensors(m, bytes, [...wanted], { externalDataDir: externalDataDirOf(m, opts) });
  const lookup = (name: string): TensorMeta | undefined => {
    const p = probed.get(name);
    if (p) return p;
    const init = m.initializers.get(name);
    if (init) return { type: ortTypeOf(init.dataType), shape: init.dims };
    return undefined;
  };
  const tMeta = lookup(T);
  if (!tMeta || !FLOAT_TYPES.has(tMeta.type)) throw new QuantlensError('GRADIENT', `tensor "${T}" is ${tMeta?.type ?? 'of unknown type'}, not a float tensor`, where);

  // Active = depends on the override through float tensors; useful = active and reaches the logits.
  const active = new Set<string>([T]);
  for (const n of coneNodes) {
    if (!n.inputs.some((i) => active.has(i))) continue;
    for (const o of n.outputs) if (o && FLOAT_TYPES.has(lookup(o)?.type ?? '')) active.add(o);
  }
  if (!active.has(logits)) throw new QuantlensError('GRADIENT', `logits "${logits}" do not depend on "${T}"`, where);
  const useful = new Set([...active].filter((t) => toLogits.has(t)));
  // Quantized linear layers become one straight-through node each (quantized-patterns.ts).
  const { nodes: pathNodes, rules: unitRules } = collapseQuantizedUnits(
    m,
    coneNodes.filter((n) => n.inputs.some((i) => active.has(i)) && n.outputs.some((o) => useful.has(o))),
    active,
    T,
  );
  for (const n of pathNodes) {
    if (!unitRules.has(n) && !ruleFor(n.opType, n.domain)) throw new QuantlensError('GRADIENT', `no gradient rule for ${n.opType} (node ${n.name || n.outputs[0]})`, where);
  }

  // Objective and its gradient at the logits.
  const e = new GradEmitter(opset, lookup);
  const lMeta = lookup(logits)!;
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

  // Reverse sweep.
  const contributions = new Map<string, string[]>([[logits, [dLogits]]]);
  const gradOf = (t: string): string | null => {
    const parts = contributions.get(t);
    if (!parts || parts.length === 0) return null;
    if (parts.length > 1) contributions.set(t, [e.op1('Sum', parts)]);
    return contributions.get(t)![0];
  };
  for (let k = pathNodes.length - 1; k >= 0; k--) {
    const node = pathNodes[k];
    const gy = node.outputs.map((o) => (useful.has(o) ? gradOf(o) : null));
    if (gy.every((g) => g === null)) continue;
    const needs = node.inputs.map((i) => i !== '' && active.has(i));
    const rule = unitRules.get(node) ?? ruleFor(node.opType, node.domain)!;
    const gx = rule({ node, gy, needs, e, constInts: (name) => constInts(m, name) });
    node.inputs.forEach((inp, i) => {
      if (!needs[i] || !gx[i]) return;
      const list = contributions.get(inp) ?? [];
      list.push(gx[i]!);
      contributions.set(inp, list);
    });
  }
  const gT = gradOf(T);
  if (!gT) throw new QuantlensError('GRADIENT', `no gradient reached "${T}" from "${logits}"`, where);
  e.nodes.push({ opType: 'Identity', inputs: [gT], outputs: [gradName(T)], attrs: {}, name: '/quantlens/grad_output', domain: '' });

  const out = writeModel(m, bytes, producer, T, tMeta, ltype, e);
  return { bytes: out, info: { tensor: T, logits, pathNodes, backwardNodeCount: e.nodes.length, tensorMeta: tMeta, logitsShape: lMeta.shape } };
}

function writeModel(m: OnnxModel, bytes: Uint8Array, producer: NodeInfo, T: string, tMeta: TensorMeta, objectiveType: string, e: GradEmitter): Uint8Array {
  const g = new ProtoWriter();
  for (const [start, end] of m.graphRanges) {
    for (const f of scanFields(m.source, start, end)) {
      if (f.field === 1 && f.start === producer.range[0]) {
        // The producer, with T renamed to T__original; then T = Identity(T__override).
        const nb = bytes.subarray(f.start, f.end);
        g.message(1, (nw) => {
          for (const nf of fields(nb)) {
            if (nf.field === 2 && str(nb, nf) === T) nw.string(2, originalName(T));
            else nw.raw(nb.subarray(nf.fieldStart, nf.end));
          }
        });
        g.message(1, (nw) => encodeNode(nw, { opType: 'Identity', inputs: [overrideName(T)], outputs: [T], name: '/quantlens/override' }));
      } else {
        g.raw(bytes.subarray(f.fieldStart, f.end));
      }
    }
  }
  for (const n of e.nodes) g.message(1, (nw) => encodeNode(nw, n));
  const code = ONNX_CODE[tMeta.type];
  g.message(11, (w) => encodeValueInfo(w, overrideName(T), code, tMeta.shape.length));
  g.message(11, (w) => encodeValueInfo(w, TARGET_INPUT, DTYPE.int64, 1));
  g.message(12, (w) => encodeValueInfo(w, OBJECTIVE_OUTPUT, ONNX_CODE[objectiveType], 1));
  g.message(12, (w) => encodeValueInfo(w, gradName(T), code, tMeta.shape.length));
  g.message(12, (w) => encodeValueInfo(w, originalName(T), code, tMeta.shape.length));

  const w = new ProtoWriter();
  let graphWritten = false;
  for (const f of scanFields(m.source, 0, m.size)) {
    if (f.field === 7) {
      if (!graphWritten) w.bytes(7, g.finish());
      graphWritten = true;
    } else {
      w.raw(bytes.subarray(f.fieldStart, f.end));
    }
  }
  return w.finish();
}
