/**
 * Streaming rewrite of an ONNX model with some MatMuls replaced — never decode + re-encode.
 *
 * Every top-level ModelProto field is copied byte for byte (fields quantlens does not know
 * included), except `graph`, whose fields are also copied verbatim except: the replaced MatMul
 * nodes (their replacement nodes are written at the same position, keeping topological order),
 * weight initializers / Constant nodes / graph-input entries no longer used, and initializers in
 * external data (their TensorProto is copied with only the external_data entries rewritten, as
 * their bytes move into the output's own data file, so the result is self-contained). New
 * initializers are appended at the end of the graph, and the com.microsoft opset import is
 * appended when a contrib op was written.
 *
 * Memory: lengths of everything are computed first (new tensors' sizes follow from their dims),
 * then bytes stream to disk: one weight is read, quantized and written at a time; copied ranges
 * move in 8 MB chunks. Peak ≈ a few times the largest weight + the graph description.
 * If the output would exceed protobuf's 2 GiB, new tensors go to `<out>.data` (64-byte aligned).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { encodeNode, type TypedData } from '../builder.ts';
import { DTYPE } from '../dtypes.ts';
import { fileSource, readTensorFloat32, scanFields, type ByteSource, type OnnxModel, type TensorInfo } from '../model-reader.ts';
import { fields, ProtoWriter, str, WIRE_LEN } from '../wire.ts';
import { QuantlensError } from '../../core/errors.ts';
import type { QuantTarget } from './targets.ts';
import type { NewTensor, NodeSpec, VariantContext, VariantEmitter, WeightPlan } from './variants.ts';

const CHUNK = 8 << 20;
const MAX_INLINE_MODEL = 1.9 * 2 ** 30;
const EXTERNAL_MIN_BYTES = 1024;
const BYTES_PER: Record<string, number> = { float: 4, float16: 2, uint8: 1, int8: 1, int64: 8, int32: 4 };

/** A piece of output: exact byte length known before writing. */
type Piece =
  | { kind: 'copy'; start: number; end: number }
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'rehome'; header: Uint8Array; tensor: TensorInfo; dataOffset: number }
  | { kind: 'new'; header: Uint8Array; rawLength: number; tensor: NewTensor; plan: PlanEntry; external: boolean; dataOffset: number };

interface PlanEntry {
  weightName: string;
  weight: TensorInfo;
  plan: WeightPlan;
  K: number;
  N: number;
}

function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function fieldLength(payload: number): number {
  // tag of fields < 16 with wire type 2 is one byte
  return 1 + varintLength(payload) + payload;
}

function pieceLength(p: Piece): number {
  switch (p.kind) {
    case 'copy':
      return p.end - p.start;
    case 'bytes':
      return p.data.length;
    case 'rehome':
      return p.header.length;
    case 'new':
      return p.header.length + (p.external ? 0 : p.rawLength);
  }
}

/** TensorProto fields before the data: dims, data_type, name (+ external_data entries). */
function tensorHeader(name: string, dims: number[], dataType: number, external?: { location: string; offset: number; length: number }): Uint8Array {
  const w = new ProtoWriter();
  if (dims.length) w.packedVarints(1, dims);
  w.varint(2, dataType);
  w.string(8, name);
  if (external) {
    for (const [k, v] of [['location', external.location], ['offset', String(external.offset)], ['length', String(external.length)]] as const)
      w.message(13, (e) => e.string(1, k).string(2, v));
    w.varint(14, 1);
  }
  return w.finish();
}

/** Wrap a GraphProto field payload as `initializer` (graph field 5). */
function asField(fieldNo: number, payload: Uint8Array, rawLength = 0): Uint8Array {
  const w = new ProtoWriter();
  w.tag(fieldNo, WIRE_LEN).rawVarint(payload.length + rawLength);
  w.raw(payload);
  return w.finish();
}

/** Sequential writer with a small buffer; copies ranges from a ByteSource in chunks. */
class SyncWriter {
  private fd: number;
  private buf = Buffer.allocUnsafe(1 << 20);
  private len = 0;
  written = 0;
  constructor(file: string) {
    this.fd = openSync(file, 'w');
  }
  write(data: Uint8Array): void {
    if (this.len + data.length > this.buf.length) this.flush();
    if (data.length > this.buf.length) {
      writeAll(this.fd, data);
    } else {
      this.buf.set(data, this.len);
      this.len += data.length;
    }
    this.written += data.length;
  }
  copy(src: ByteSource, start: number, end: number): void {
    for (let p = start; p < end; p += CHUNK) this.write(src.read(p, Math.min(CHUNK, end - p)));
  }
  pad(to: number): void {
    if (this.written < to) this.write(new Uint8Array(to - this.written));
  }
  flush(): void {
    if (this.len) writeAll(this.fd, this.buf.subarray(0, this.len));
    this.len = 0;
  }
  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, data.length - off);
}

function bytesOf(d: TypedData): Uint8Array {
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export interface RewriteResult {
  quantized: string[];
  dataFile: string | null;
}

export interface RewritePlan {
  model: OnnxModel;
  targets: QuantTarget[];
  emitter: VariantEmitter;
}

/** Write the rewritten model to `tmpOnnx` (and its data to `tmpData` when needed). */
export function rewriteModel(
  { model: m, targets, emitter }: RewritePlan,
  out: { tmpOnnx: string; finalOnnx: string; openData: () => string; /** tests: as if over 2 GiB */ forceExternal?: boolean; onProgress?: (done: number, total: number) => void },
): RewriteResult {
  const opset = m.opsets.find((o) => o.domain === '')?.version ?? 0;
  // ---- names in use, and a fresh-name generator
  const used = new Set<string>();
  for (const n of m.nodes) {
    n.inputs.forEach((i) => used.add(i));
    n.outputs.forEach((o) => used.add(o));
    if (n.name) used.add(n.name);
  }
  for (const k of m.initializers.keys()) used.add(k);
  for (const i of m.inputs) used.add(i.name);
  const ctx: VariantContext = {
    opset,
    fresh(base) {
      let name = base;
      for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
      used.add(name);
      return name;
    },
  };

  // ---- one plan per distinct weight; replacement nodes per MatMul
  const plans = new Map<string, PlanEntry>();
  const replacement = new Map<number, Uint8Array>();
  let usesContrib = false;
  for (const t of targets) {
    const wName = t.node.inputs[1];
    let entry = plans.get(wName);
    if (!entry) {
      entry = { weightName: wName, weight: t.weight, plan: emitter.weight(wName, t.K, t.N, ctx), K: t.K, N: t.N };
      plans.set(wName, entry);
    }
    const y = t.node.outputs[0];
    const mainName = t.node.name || ctx.fresh(`${y}/quantized`);
    let specs: NodeSpec[];
    if (t.dtype === 'float16') {
      // Quantized ops run in float32 (bnb/ORT arithmetic on float); fp16 activations are cast around them.
      const a32 = ctx.fresh(`${y}/a_float32`);
      const y32 = ctx.fresh(`${y}/y_float32`);
      specs = [
        { opType: 'Cast', inputs: [t.node.inputs[0]], outputs: [a32], attrs: { to: DTYPE.float }, name: ctx.fresh(`${mainName}/cast_a_float32`) },
        ...emitter.nodes(entry.plan, a32, y32, t.K, t.N, ctx.fresh(`${mainName}/float32`), ctx),
        { opType: 'Cast', inputs: [y32], outputs: [y], attrs: { to: DTYPE.float16 }, name: mainName },
      ];
    } else {
      specs = emitter.nodes(entry.plan, t.node.inputs[0], y, t.K, t.N, mainName, ctx);
    }
    const w = new ProtoWriter();
    for (const s of specs) {
      if (s.domain === 'com.microsoft') usesContrib = true;
      w.message(1, (nw) => encodeNode(nw, s));
    }
    replacement.set(t.node.range[0], w.finish());
  }

  // ---- what disappears: weights (and their Constant nodes / graph-input entries) with no other use
  const targetStarts = new Set(targets.map((t) => t.node.range[0]));
  const subgraphNodes = m.nodes.filter((n) => Object.values(n.attributes).some((a) => a.type === 'graph'));
  const graphOutputs = new Set(m.outputs.map((o) => o.name));
  const removedNodes = new Set<number>(targetStarts);
  const removedInits = new Set<number>();
  const removedInputNames = new Set<string>();
  const enc = new TextEncoder();
  for (const [wName, entry] of plans) {
    const usedElsewhere =
      graphOutputs.has(wName) ||
      m.nodes.some((n) => !targetStarts.has(n.range[0]) && n.inputs.includes(wName)) ||
      subgraphNodes.some((n) => Buffer.from(m.source.read(n.range[0], n.range[1] - n.range[0])).includes(enc.encode(wName)));
    if (usedElsewhere) continue;
    if (m.initializers.has(wName)) {
      removedInits.add(entry.weight.range[0]);
      removedInputNames.add(wName);
    } else {
      const c = m.nodes.find((n) => n.opType === 'Constant' && n.outputs[0] === wName);
      if (c) removedNodes.add(c.range[0]);
    }
  }

  // ---- the graph pieces
  const newBytes = [...plans.values()].reduce((s, e) => s + e.plan.tensors.reduce((a, t) => a + numel(t.dims) * BYTES_PER[t.type], 0), 0);
  const externalNew = out.forceExternal === true || m.size + newBytes > MAX_INLINE_MODEL;
  let dataFile: string | null = null;
  const dataLocation = path.basename(`${out.finalOnnx}.data`);
  let dataOffset = 0;
  const claimData = (length: number) => {
    dataFile ??= out.openData();
    dataOffset += (64 - (dataOffset % 64)) % 64;
    const at = dataOffset;
    dataOffset += length;
    return { at, location: dataLocation };
  };
  const initByStart = new Map([...m.initializers.values()].map((t) => [t.range[0], t]));

  const graphs: Piece[][] = m.graphRanges.map(() => []);
  m.graphRanges.forEach(([gs, ge], gi) => {
    const pieces = graphs[gi];
    let copyStart = -1;
    const flushCopy = (upTo: number) => {
      if (copyStart >= 0 && upTo > copyStart) pieces.push({ kind: 'copy', start: copyStart, end: upTo });
      copyStart = -1;
    };
    for (const g of scanFields(m.source, gs, ge)) {
      let drop = false;
      let emit: Piece | null = null;
      if (g.field === 1 && g.wire === WIRE_LEN && removedNodes.has(g.start)) {
        drop = true;
        const rep = replacement.get(g.start);
        if (rep) emit = { kind: 'bytes', data: rep };
      } else if (g.field === 5 && g.wire === WIRE_LEN) {
        if (removedInits.has(g.start)) drop = true;
        else {
          const t = initByStart.get(g.start);
          if (t && t.location.kind === 'external') {
            drop = true;
            emit = rehomePiece(m.source, g.start, g.end, t, claimData);
          }
        }
      } else if (g.field === 11 && g.wire === WIRE_LEN && removedInputNames.size) {
        const b = m.source.read(g.start, g.end - g.start);
        for (const f of fields(b)) if (f.field === 1 && removedInputNames.has(str(b, f))) drop = true;
      }
      if (drop) {
        flushCopy(g.fieldStart);
        if (emit) pieces.push(emit);
      } else if (copyStart < 0) copyStart = g.fieldStart;
    }
    flushCopy(ge);
  });

  // New initializers go at the end of the last graph field.
  const last = graphs[graphs.length - 1];
  for (const entry of plans.values()) {
    for (const t of entry.plan.tensors) {
      const rawLength = numel(t.dims) * BYTES_PER[t.type];
      const external = externalNew && rawLength >= EXTERNAL_MIN_BYTES;
      if (external) {
        const { at } = claimData(rawLength);
        const header = asField(5, tensorHeader(t.name, t.dims, DTYPE[t.type], { location: dataLocation, offset: at, length: rawLength }));
        last.push({ kind: 'new', header, rawLength, tensor: t, plan: entry, external, dataOffset: at });
      } else {
        const inner = tensorHeader(t.name, t.dims, DTYPE[t.type]);
        const payload = inner.length + 1 + varintLength(rawLength) + rawLength;
        const w = new ProtoWriter();
        w.tag(5, WIRE_LEN).rawVarint(payload).raw(inner).tag(9, WIRE_LEN).rawVarint(rawLength);
        last.push({ kind: 'new', header: w.finish(), rawLength, tensor: t, plan: entry, external, dataOffset: 0 });
      }
    }
  }

  // ---- write
  const onnx = new SyncWriter(out.tmpOnnx);
  const data = dataFile ? new SyncWriter(dataFile) : null;
  let produced: { entry: PlanEntry; values: Record<string, TypedData> } | null = null;
  const quantizedNames: string[] = targets.map((t) => t.node.name || t.node.outputs[0]);
  let weightsDone = 0;
  out.onProgress?.(0, plans.size);
  try {
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
          const b = readTensorFloat32(m, p.plan.weight);
          produced = { entry: p.plan, values: p.plan.plan.produce(b) };
          out.onProgress?.(++weightsDone, plans.size);
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
  } finally {
    onnx.close();
    data?.close();
  }
  return { quantized: quantizedNames, dataFile };
}

function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** A TensorProto in external data, copied verbatim except its external_data entries. */
function rehomePiece(src: ByteSource, start: number, end: number, t: TensorInfo, claim: (length: number) => { at: number; location: string }): Piece {
  const length = t.location.length >= 0 ? t.location.length : fileSize(t.location.file!) - t.location.offset;
  const { at, location } = claim(length);
  const w = new ProtoWriter();
  const b = src.read(start, end - start);
  for (const f of fields(b)) if (f.field !== 13) w.raw(b.subarray(f.fieldStart, f.end));
  for (const [k, v] of [['location', location], ['offset', String(at)], ['length', String(length)]] as const)
    w.message(13, (e) => e.string(1, k).string(2, v));
  return { kind: 'rehome', header: asField(5, w.finish()), tensor: t, dataOffset: at };
}

function fileSize(file: string): number {
  const s = fileSource(file);
  try {
    return s.size;
  } finally {
    s.close();
  }
}

function copyTensorData(t: TensorInfo, data: SyncWriter): void {
  const src = fileSource(t.location.file!);
  try {
    const length = t.location.length >= 0 ? t.location.length : src.size - t.location.offset;
    data.copy(src, t.location.offset, t.location.offset + length);
  } finally {
    src.close();
  }
}
