/**
 * Streaming rewrite of an ONNX model with some linear layers replaced — never decode + re-encode.
 *
 * Every top-level ModelProto field is copied byte for byte (fields quantlens does not know
 * included), except `graph`, whose fields are also copied verbatim except: the replaced nodes
 * (their replacement nodes are written at the same position, keeping topological order; see
 * replacement.ts), weight initializers / Constant / Transpose nodes / graph-input entries no longer
 * used, and initializers in external data (their TensorProto is copied with only the external_data
 * entries rewritten, as their bytes move into the output's own data file, so the result is
 * self-contained). New initializers are appended at the end of the graph, and the com.microsoft
 * opset import is appended when a contrib op was written.
 *
 * Memory: lengths of everything are computed first (new tensors' sizes follow from their dims),
 * then bytes stream to disk: one weight is read, quantized and written at a time; copied ranges
 * move in 8 MB chunks. Peak ≈ a few times the largest weight + the graph description.
 * If the output would exceed protobuf's 2 GiB, new tensors go to `<out>.data` (64-byte aligned).
 */
import path from 'node:path';
import type { TypedData } from '../builder.ts';
import { DTYPE } from '../dtypes.ts';
import { defaultOpset, scanFields, type OnnxModel } from '../model-reader.ts';
import { fields, ProtoWriter, str, WIRE_LEN } from '../wire.ts';
import { QuantlensError } from '../../core/errors.ts';
import { replacementFor } from './replacement.ts';
import {
  asField, BYTES_PER, bytesOf, copyTensorData, numel, pieceLength, rehomePiece, SyncWriter, tensorHeader, varintLength,
  type Piece, type PlanEntry,
} from './rewrite-pieces.ts';
import type { QuantTarget } from './targets.ts';
import { type VariantContext, type VariantEmitter } from './variants.ts';
import { asKN, FloatScratch, readWeightValues, type SourceWeight } from './weight-source.ts';

const MAX_INLINE_MODEL = 1.9 * 2 ** 30;
const EXTERNAL_MIN_BYTES = 1024;

export interface RewriteResult {
  quantized: string[];
  dataFile: string | null;
}

export interface RewritePlan {
  model: OnnxModel;
  targets: QuantTarget[];
  emitter: VariantEmitter;
}

export interface RewriteOutput {
  tmpOnnx: string;
  finalOnnx: string;
  openData: () => string;
  /** tests: as if over 2 GiB */
  forceExternal?: boolean;
  /** Called with (weights done, weights in all) as weights are quantized (a progress line; not a setting). */
  onProgress?: (done: number, total: number) => void;
}

/** Names in use, and a fresh-name generator over them. */
function variantContext(m: OnnxModel): VariantContext {
  const used = new Set<string>();
  for (const n of m.nodes) {
    n.inputs.forEach((i) => used.add(i));
    n.outputs.forEach((o) => used.add(o));
    if (n.name) used.add(n.name);
  }
  for (const k of m.initializers.keys()) used.add(k);
  for (const i of m.inputs) used.add(i.name);
  return {
    opset: defaultOpset(m),
    fresh(base) {
      let name = base;
      for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
      used.add(name);
      return name;
    },
  };
}

/** An [N, N] identity of the model's float type (Attention targets; see replacement.ts). */
function identityEntry(N: number, dtype: QuantTarget['dtype'], ctx: VariantContext): PlanEntry {
  const name = ctx.fresh(`quantlens/identity_${N}`);
  return {
    key: `identity:${N}:${dtype}`,
    read: () => null,
    scratchElements: 0,
    plan: {
      tensors: [{ name, type: dtype, dims: [N, N] }],
      produce() {
        const d = dtype === 'float' ? new Float32Array(N * N) : new Uint16Array(N * N);
        for (let i = 0; i < N; i++) d[i * N + i] = dtype === 'float' ? 1 : 0x3c00;
        return { [name]: d };
      },
    },
  };
}

/** One plan per distinct weight (and identity), and the replacement bytes per replaced node. */
function planReplacements(m: OnnxModel, targets: QuantTarget[], emitter: VariantEmitter, ctx: VariantContext) {
  const plans = new Map<string, PlanEntry>();
  const replacement = new Map<number, Uint8Array>();
  let usesContrib = false;
  for (const t of targets) {
    const key = `${t.weightName}${t.transposed ? '^T' : ''}`;
    let entry = plans.get(key);
    if (!entry) {
      const { weight, K, N } = t;
      const read = (scratch: FloatScratch): SourceWeight => ({ data: readWeightValues(m, weight, scratch), layout: t.transposed ? 'NK' : 'KN', K, N });
      entry = { key, read, scratchElements: weight.dataType === DTYPE.float ? K * N : 0, plan: emitter.weight(t.weightName, t.K, t.N, ctx) };
      plans.set(key, entry);
    }
    let identity: string | undefined;
    if (t.kind === 'attention') {
      const idKey = `identity:${t.N}:${t.dtype}`;
      if (!plans.has(idKey)) plans.set(idKey, identityEntry(t.N, t.dtype, ctx));
      identity = plans.get(idKey)!.plan.tensors[0].name;
    }
    const r = replacementFor(t, entry, emitter, ctx, m.source, identity);
    usesContrib ||= r.usesContrib;
    replacement.set(t.node.range[0], r.bytes);
  }
  return { plans, replacement, usesContrib };
}

/** What disappears: replaced nodes, then weights (Constant / Transpose nodes, graph inputs) with no other use. */
function removals(m: OnnxModel, targets: QuantTarget[]) {
  const removedNodes = new Set<number>(targets.map((t) => t.node.range[0]));
  const subgraphNodes = m.nodes.filter((n) => Object.values(n.attributes).some((a) => a.type === 'graph'));
  const graphOutputs = new Set(m.outputs.map((o) => o.name));
  const enc = new TextEncoder();
  const usedElsewhere = (name: string) =>
    graphOutputs.has(name) ||
    m.nodes.some((n) => !removedNodes.has(n.range[0]) && n.inputs.includes(name)) ||
    subgraphNodes.some((n) => Buffer.from(m.source.read(n.range[0], n.range[1] - n.range[0])).includes(enc.encode(name)));
  // Transposes first: a Transpose that goes frees its weight for removal below.
  for (const t of targets) if (t.transposeNode && !usedElsewhere(t.transposeNode.outputs[0])) removedNodes.add(t.transposeNode.range[0]);
  const removedInits = new Set<number>();
  const removedInputNames = new Set<string>();
  for (const t of new Map(targets.map((t) => [t.weightName, t])).values()) {
    if (usedElsewhere(t.weightName)) continue;
    if (m.initializers.has(t.weightName)) {
      removedInits.add(t.weight.range[0]);
      removedInputNames.add(t.weightName);
    } else if (t.constantNode) removedNodes.add(t.constantNode.range[0]);
  }
  return { removedNodes, removedInits, removedInputNames };
}

type Claim = (length: number) => { at: number; location: string };

/** Each top-level graph field as pieces: verbatim ranges, replacements, re-homed external tensors. */
function graphPieces(m: OnnxModel, replacement: Map<number, Uint8Array>, gone: ReturnType<typeof removals>, claimData: Claim): Piece[][] {
  const initByStart = new Map([...m.initializers.values()].map((t) => [t.range[0], t]));
  return m.graphRanges.map(([gs, ge]) => {
    const pieces: Piece[] = [];
    let copyStart = -1;
    const flushCopy = (upTo: number) => {
      if (copyStart >= 0 && upTo > copyStart) pieces.push({ kind: 'copy', start: copyStart, end: upTo });
      copyStart = -1;
    };
    for (const g of scanFields(m.source, gs, ge)) {
      let drop = false;
      let emit: Piece | null = null;
      if (g.field === 1 && g.wire === WIRE_LEN && gone.removedNodes.has(g.start)) {
        drop = true;
        const rep = replacement.get(g.start);
        if (rep) emit = { kind: 'bytes', data: rep };
      } else if (g.field === 5 && g.wire === WIRE_LEN) {
        if (gone.removedInits.has(g.start)) drop = true;
        else {
          const t = initByStart.get(g.start);
          if (t && t.location.kind === 'external') {
            drop = true;
            emit = rehomePiece(m.source, g.start, g.end, t, claimData);
          }
        }
      } else if (g.field === 11 && g.wire === WIRE_LEN && gone.removedInputNames.size) {
        const b = m.source.read(g.start, g.end - g.start);
        for (const f of fields(b)) if (f.field === 1 && gone.removedInputNames.has(str(b, f))) drop = true;
      }
      if (drop) {
        flushCopy(g.fieldStart);
        if (emit) pieces.push(emit);
      } else if (copyStart < 0) copyStart = g.fieldStart;
    }
    flushCopy(ge);
    return pieces;
  });
}

/** The new initializers, inline or in the data file. */
function newTensorPieces(plans: Iterable<PlanEntry>, externalNew: boolean, dataLocation: string, claimData: Claim): Piece[] {
  const out: Piece[] = [];
  for (const entry of plans) {
    for (const t of entry.plan.tensors) {
      const rawLength = numel(t.dims) * BYTES_PER[t.type];
      const external = externalNew && rawLength >= EXTERNAL_MIN_BYTES;
      if (external) {
        const { at } = claimData(rawLength);
        const header = asField(5, tensorHeader(t.name, t.dims, DTYPE[t.type], { location: dataLocation, offset: at, length: rawLength }));
        out.push({ kind: 'new', header, rawLength, tensor: t, plan: entry, external, dataOffset: at });
      } else {
        const inner = tensorHeader(t.name, t.dims, DTYPE[t.type]);
        const payload = inner.length + 1 + varintLength(rawLength) + rawLength;
        const w = new ProtoWriter();
        w.tag(5, WIRE_LEN).rawVarint(payload).raw(inner).tag(9, WIRE_LEN).rawVarint(rawLength);
        out.push({ kind: 'new', header: w.finish(), rawLength, tensor: t, plan: entry, external, dataOffset: 0 });
      }
    }
  }
  return out;
}

/**
 * One weight's new tensors. Its values are read into a buffer reused for every weight (it grows to
 * the largest, then no fresh pages per weight); a variant that takes the stored layout gets it as
 * is, any other gets B [K, N], transposed into a second reused buffer only when the model stores Bᵀ.
 */
function produceWeight(entry: PlanEntry, values: FloatScratch, transposed: FloatScratch): Record<string, TypedData> {
  const w = entry.read(values);
  const plan = entry.plan;
  if (!('produceFrom' in plan)) return plan.produce(w ? asKN(w, transposed) : new Float32Array(0));
  if (!w) throw new QuantlensError('QUANTIZE', `internal: plan "${entry.key}" reads its stored weight but has none`);
  return plan.produceFrom(w);
}

/** Stream the pieces to disk; quantized tensors are produced one weight at a time. */
function writePieces(m: OnnxModel, graphs: Piece[][], usesContrib: boolean, onnx: SyncWriter, data: SyncWriter | null, progress?: () => void): void {
  let produced: { entry: PlanEntry; values: Record<string, TypedData> } | null = null;
  const values = new FloatScratch();
  const transposed = new FloatScratch();
  // Sized for the largest weight at once: growing through the sizes would leave each smaller buffer as garbage.
  let largest = 0;
  for (const pieces of graphs) for (const p of pieces) if (p.kind === 'new') largest = Math.max(largest, p.plan.scratchElements);
  values.take(largest);
  const writePiece = (p: Piece) => {
    if (p.kind === 'copy') onnx.copy(m.source, p.start, p.end);
    else if (p.kind === 'bytes') onnx.write(p.data);
    else if (p.kind === 'rehome') {
      onnx.write(p.header);
      data!.pad(p.dataOffset);
      copyTensorData(p.tensor, data!);
    } else {
      if (produced?.entry !== p.plan) {
        produced = null; // let the previous weight's buffers go before reading the next
        produced = { entry: p.plan, values: produceWeight(p.plan, values, transposed) };
        progress?.();
      }
      const bytes = bytesOf(produced.values[p.tensor.name]);
      if (bytes.length !== p.rawLength) throw new QuantlensError('QUANTIZE', `internal: tensor ${p.tensor.name} has ${bytes.length} bytes, planned ${p.rawLength}`);
      onnx.write(p.header);
      if (p.external) {
        data!.pad(p.dataOffset);
        data!.write(bytes);
      } else onnx.write(bytes);
    }
  };
  let gi = 0;
  for (const f of scanFields(m.source, 0, m.size)) {
    if (f.field === 7 && f.wire === WIRE_LEN) {
      const pieces = graphs[gi++];
      const total = pieces.reduce((s, p) => s + pieceLength(p), 0);
      onnx.write(new ProtoWriter().tag(7, WIRE_LEN).rawVarint(total).finish());
      for (const p of pieces) writePiece(p);
    } else onnx.copy(m.source, f.fieldStart, f.end);
  }
  if (usesContrib && !m.opsets.some((o) => o.domain === 'com.microsoft'))
    onnx.write(new ProtoWriter().message(8, (o) => o.string(1, 'com.microsoft').varint(2, 1)).finish());
}

/** Write the rewritten model to `tmpOnnx` (and its data to a file from `openData` when needed). */
export function rewriteModel({ model: m, targets, emitter }: RewritePlan, out: RewriteOutput): RewriteResult {
  const ctx = variantContext(m);
  const { plans, replacement, usesContrib } = planReplacements(m, targets, emitter, ctx);
  const gone = removals(m, targets);

  const newBytes = [...plans.values()].reduce((s, e) => s + e.plan.tensors.reduce((a, t) => a + numel(t.dims) * BYTES_PER[t.type], 0), 0);
  const externalNew = out.forceExternal === true || m.size + newBytes > MAX_INLINE_MODEL;
  let dataFile: string | null = null;
  const dataLocation = path.basename(`${out.finalOnnx}.data`);
  let dataOffset = 0;
  const claimData: Claim = (length) => {
    dataFile ??= out.openData();
    dataOffset += (64 - (dataOffset % 64)) % 64;
    const at = dataOffset;
    dataOffset += length;
    return { at, location: dataLocation };
  };

  const graphs = graphPieces(m, replacement, gone, claimData);
  // New initializers go at the end of the last graph field.
  graphs[graphs.length - 1].push(...newTensorPieces(plans.values(), externalNew, dataLocation, claimData));

  const onnx = new SyncWriter(out.tmpOnnx);
  const data = dataFile ? new SyncWriter(dataFile) : null;
  try {
    let weightsDone = 0;
    out.onProgress?.(0, plans.size);
    writePieces(m, graphs, usesContrib, onnx, data, () => out.onProgress?.(++weightsDone, plans.size));
  } finally {
    onnx.close();
    data?.close();
  }
  return { quantized: targets.map((t) => t.node.name || t.node.outputs[0]), dataFile };
}
