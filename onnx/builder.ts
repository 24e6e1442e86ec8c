/**
 * Writes ONNX models from scratch: the demo model, converted checkpoints, quantized graphs and
 * the small estimator / backward graphs. Node names follow Optimum's (`/model/layers.0/mlp/...`)
 * where callers pass them, so capture and inspection treat built and exported models alike.
 *
 *   const g = new GraphBuilder('gram');
 *   g.input('X', 'float32', ['n', 512]);
 *   const [m] = g.node('ReduceMean', ['X'], ['mean'], { axes: ints([0]), keepdims: 1 });
 *   g.output('mean', 'float32', [1, 512]);
 *   const bytes = g.toModel({ opset: 17 });
 */
import { closeSync, createWriteStream, openSync, writeSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { ProtoWriter } from './wire.ts';
import { DTYPE, type DTypeName } from './dtypes.ts';

export type Dim = number | string | null;

/** Attribute values: plain number = INT, string = STRING, number[] = INTS; wrap for other kinds. */
export type AttrInput =
  | number
  | string
  | number[]
  | { kind: 'float'; v: number }
  | { kind: 'floats'; v: number[] }
  | { kind: 'ints'; v: number[] }
  | { kind: 'strings'; v: string[] }
  | { kind: 'tensor'; v: TensorData };

export const float = (v: number): AttrInput => ({ kind: 'float', v });
export const floatsAttr = (v: number[]): AttrInput => ({ kind: 'floats', v });
export const ints = (v: number[]): AttrInput => ({ kind: 'ints', v });
export const strings = (v: string[]): AttrInput => ({ kind: 'strings', v });

export type TypedData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array | Int16Array;

export interface TensorData {
  name?: string;
  type: DTypeName;
  dims: number[];
  /** Little-endian element bytes, or a typed array of the element type (Uint16Array for float16). */
  data: TypedData;
}

export function tensor(type: DTypeName, dims: number[], data: TypedData): TensorData {
  const numel = dims.reduce((a, b) => a * b, 1);
  const bytesPer: Partial<Record<DTypeName, number>> = { float: 4, double: 8, int32: 4, int64: 8, uint8: 1, int8: 1, float16: 2, bfloat16: 2, uint16: 2, int16: 2, bool: 1 };
  const want = numel * (bytesPer[type] ?? 0);
  if (data.byteLength !== want) throw new RangeError(`tensor ${type}[${dims}] needs ${want} bytes, got ${data.byteLength}`);
  return { type, dims, data };
}

interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

/** A node as the builder (and the backward-graph emitter) holds it before encoding. */
export interface BuiltNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrInput>;
  name: string;
  domain: string;
}

function encodeTensor(w: ProtoWriter, name: string, t: TensorData, external?: ExternalRef): void {
  w.packedVarints(1, t.dims);
  w.varint(2, DTYPE[t.type]);
  w.string(8, name);
  if (external) {
    const entry = (k: string, v: string) => w.message(13, (e) => e.string(1, k).string(2, v));
    entry('location', external.location);
    entry('offset', String(external.offset));
    entry('length', String(external.length));
    w.varint(14, 1);
  } else {
    w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
}

/** A ValueInfoProto of element type `elemType` (an ONNX code) and `rank` dimensions of unknown size. */
export function encodeRankedValueInfo(w: ProtoWriter, name: string, elemType: number, rank: number): void {
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

function encodeValueInfo(w: ProtoWriter, name: string, type?: DTypeName, dims?: Dim[]): void {
  w.string(1, name);
  if (!type) return;
  w.message(2, (tp) =>
    tp.message(1, (tt) => {
      tt.varint(1, DTYPE[type]);
      if (dims)
        tt.message(2, (shape) => {
          for (const d of dims)
            shape.message(1, (dim) => {
              if (typeof d === 'number') dim.varint(1, d);
              else if (typeof d === 'string') dim.string(2, d);
            });
        });
    }),
  );
}

function encodeAttr(w: ProtoWriter, name: string, a: AttrInput): void {
  w.string(1, name);
  if (typeof a === 'number') {
    w.varint(3, a).varint(20, 2);
  } else if (typeof a === 'string') {
    w.string(4, a).varint(20, 3);
  } else if (Array.isArray(a)) {
    w.packedVarints(8, a).varint(20, 7);
  } else if (a.kind === 'float') {
    w.float(2, a.v).varint(20, 1);
  } else if (a.kind === 'floats') {
    w.packedFloats(7, a.v).varint(20, 6);
  } else if (a.kind === 'ints') {
    w.packedVarints(8, a.v).varint(20, 7);
  } else if (a.kind === 'strings') {
    for (const s of a.v) w.string(9, s);
    w.varint(20, 8);
  } else {
    w.message(5, (t) => encodeTensor(t, a.v.name ?? '', a.v));
    w.varint(20, 4);
  }
}

export function encodeNode(w: ProtoWriter, n: { opType: string; inputs: string[]; outputs: string[]; attrs?: Record<string, AttrInput>; name?: string; domain?: string }): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, (aw) => encodeAttr(aw, k, v));
  if (n.domain) w.string(7, n.domain);
}

export interface ModelOptions {
  opset?: number;
  /** Extra operator sets, e.g. { 'com.microsoft': 1 }. */
  domains?: Record<string, number>;
  irVersion?: number;
  producer?: string;
  /** Metadata props written into ModelProto.metadata_props (e.g. "quantlens.demo": "random weights"). */
  metadata?: Record<string, string>;
}

export class GraphBuilder {
  private nodes: BuiltNode[] = [];
  private inits = new Map<string, TensorData>();
  /** Spill mode: large initializers already written to a data file (see spillTo). */
  private spill?: { fd: number; location: string; offset: number; threshold: number; refs: Map<string, ExternalRef> };
  private inputs: { name: string; type: DTypeName; dims: Dim[] }[] = [];
  private outputs: { name: string; type?: DTypeName; dims?: Dim[] }[] = [];
  private counter = 0;

  constructor(readonly name = 'graph') {}

  input(name: string, type: DTypeName, dims: Dim[]): string {
    this.inputs.push({ name, type, dims });
    return name;
  }

  output(name: string, type?: DTypeName, dims?: Dim[]): string {
    this.outputs.push({ name, type, dims });
    return name;
  }

  initializer(name: string, t: TensorData): string {
    if (this.inits.has(name)) throw new Error(`duplicate initializer ${name}`);
    const sp = this.spill;
    if (sp && this.writesThrough(t.data.byteLength)) {
      // 64-byte aligned, as ORT prefers; only dims and type stay in memory.
      const pad = (64 - (sp.offset % 64)) % 64;
      if (pad) writeSync(sp.fd, new Uint8Array(pad), 0, pad, sp.offset);
      sp.offset += pad;
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      for (let done = 0; done < bytes.length; ) done += writeSync(sp.fd, bytes, done, bytes.length - done, sp.offset + done);
      sp.refs.set(name, { location: sp.location, offset: sp.offset, length: bytes.length });
      sp.offset += bytes.length;
      this.inits.set(name, { type: t.type, dims: t.dims, data: new Uint8Array(0) });
      return name;
    }
    this.inits.set(name, t);
    return name;
  }

  /**
   * From now on, write every initializer of at least `threshold` bytes to `dataFile` as soon as it
   * is added, so a graph larger than memory (a converted 7B checkpoint) never holds its weights;
   * finishSpill() writes the model that references them.
   */
  spillTo(dataFile: string, threshold = 1024): void {
    if (this.inits.size) throw new Error('spillTo() must be called before the first initializer');
    this.spill = { fd: openSync(dataFile, 'w'), location: path.basename(dataFile), offset: 0, threshold, refs: new Map() };
  }

  /**
   * Whether an initializer of this many bytes goes to the data file as it is added, so its array
   * is not kept and may be reused for the next one (a streaming converter's buffers).
   */
  writesThrough(byteLength: number): boolean {
    return this.spill !== undefined && byteLength >= this.spill.threshold;
  }

  /** Close the data file and write `file`, whose large initializers point into it. */
  async finishSpill(file: string, opts: ModelOptions = {}): Promise<void> {
    const sp = this.spill;
    if (!sp) throw new Error('finishSpill() without spillTo()');
    closeSync(sp.fd);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, this.encodeModel(opts, sp.refs));
  }

  /** A float32 constant initializer with an auto-generated name unless given. */
  constF32(values: ArrayLike<number>, dims: number[], name?: string): string {
    return this.initializer(name ?? this.fresh('const'), tensor('float', dims, Float32Array.from(values)));
  }

  constI64(values: ArrayLike<number>, dims: number[] = [values.length], name?: string): string {
    return this.initializer(name ?? this.fresh('const'), tensor('int64', dims, BigInt64Array.from(Array.from(values, (v) => BigInt(v)))));
  }

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  /** Add a node. Outputs may be given, or generated as `<name or op>_output_<k>`. Returns output names. */
  node(opType: string, inputs: string[], outputs?: string[] | number, attrs: Record<string, AttrInput> = {}, opts: { name?: string; domain?: string } = {}): string[] {
    const name = opts.name ?? this.fresh(opType);
    const outs = Array.isArray(outputs) ? outputs : Array.from({ length: outputs ?? 1 }, (_, k) => `${name}_output_${k}`);
    this.nodes.push({ opType, inputs, outputs: outs, attrs, name, domain: opts.domain ?? '' });
    return outs;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  private encodeGraph(w: ProtoWriter, external?: Map<string, ExternalRef>): void {
    for (const n of this.nodes) w.message(1, (nw) => encodeNode(nw, n));
    w.string(2, this.name);
    for (const [name, t] of this.inits) w.message(5, (tw) => encodeTensor(tw, name, t, external?.get(name)));
    for (const i of this.inputs) w.message(11, (vw) => encodeValueInfo(vw, i.name, i.type, i.dims));
    for (const o of this.outputs) w.message(12, (vw) => encodeValueInfo(vw, o.name, o.type, o.dims));
  }

  private encodeModel(opts: ModelOptions, external?: Map<string, ExternalRef>): Uint8Array {
    const w = new ProtoWriter();
    w.varint(1, opts.irVersion ?? 8);
    w.string(2, opts.producer ?? 'quantlens');
    w.message(7, (gw) => this.encodeGraph(gw, external));
    w.message(8, (o) => o.string(1, '').varint(2, opts.opset ?? 17));
    for (const [domain, version] of Object.entries(opts.domains ?? {})) w.message(8, (o) => o.string(1, domain).varint(2, version));
    for (const [k, v] of Object.entries(opts.metadata ?? {})) w.message(14, (e) => e.string(1, k).string(2, v));
    return w.finish();
  }

  /** The whole model in memory (weights inline). Protobuf limits this to < 2 GiB. */
  toModel(opts: ModelOptions = {}): Uint8Array {
    return this.encodeModel(opts);
  }

  /**
   * Write `<file>` plus, for initializers of at least `threshold` bytes, `<file>.data` holding
   * their bytes (64-byte aligned, as ORT prefers). Used for models over protobuf's 2 GiB limit.
   * Caller handles temp names / renames.
   */
  async writeWithExternalData(file: string, dataFile: string, opts: ModelOptions & { threshold?: number } = {}): Promise<void> {
    const threshold = opts.threshold ?? 1024;
    const external = new Map<string, ExternalRef>();
    const out: WriteStream = createWriteStream(dataFile);
    let offset = 0;
    const write = (b: Uint8Array) =>
      new Promise<void>((resolve, reject) => (out.write(b, (e) => (e ? reject(e) : resolve()))));
    const location = path.basename(opts.metadata?.['quantlens.data_location'] ?? dataFile);
    for (const [name, t] of this.inits) {
      if (t.data.byteLength < threshold) continue;
      const pad = (64 - (offset % 64)) % 64;
      if (pad) await write(new Uint8Array(pad));
      offset += pad;
      await write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      external.set(name, { location, offset, length: t.data.byteLength });
      offset += t.data.byteLength;
    }
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, this.encodeModel(opts, external));
  }
}

/** Nodes, initializers and outputs to merge into an existing model's graph. */
export interface GraphFragment {
  nodes?: { opType: string; inputs: string[]; outputs: string[]; attrs?: Record<string, AttrInput>; name?: string; domain?: string }[];
  initializers?: (TensorData & { name: string })[];
  /** New runtime inputs (fed by the caller). */
  inputs?: { name: string; type: DTypeName; dims: Dim[] }[];
  outputs?: { name: string; type?: DTypeName; dims?: Dim[] }[];
}

/**
 * Extend an existing model without decoding and re-encoding it: protobuf merges repeated
 * occurrences of an embedded message field, so a trailing ModelProto fragment
 * `graph { node {...} initializer {...} output {...} }` appends to the graph's repeated fields.
 * The original bytes stay an untouched prefix.
 */
export function appendGraphFragment(model: Uint8Array, fragment: GraphFragment): Uint8Array {
  const frag = new ProtoWriter();
  frag.message(7, (g) => {
    for (const n of fragment.nodes ?? []) g.message(1, (nw) => encodeNode(nw, n));
    for (const t of fragment.initializers ?? []) g.message(5, (tw) => encodeTensor(tw, t.name, t));
    for (const i of fragment.inputs ?? []) g.message(11, (vw) => encodeValueInfo(vw, i.name, i.type, i.dims));
    for (const o of fragment.outputs ?? []) g.message(12, (vw) => encodeValueInfo(vw, o.name, o.type, o.dims));
  });
  const tail = frag.finish();
  const out = new Uint8Array(model.length + tail.length);
  out.set(model, 0);
  out.set(tail, model.length);
  return out;
}

/** Extra graph outputs (see appendGraphFragment). */
export function appendGraphOutputs(model: Uint8Array, outputs: { name: string; type?: DTypeName; dims?: Dim[] }[]): Uint8Array {
  return appendGraphFragment(model, { outputs });
}
