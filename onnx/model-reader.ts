/**
 * Lazy ONNX ModelProto reader. It scans the file with positional reads and records, for every
 * initializer, where its bytes are (inline or in an external data file) instead of loading them,
 * so a multi-gigabyte model is described in memory proportional to its graph, not its weights.
 * Tensor data is read one tensor at a time with readTensorBytes / readTensorFloat32.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { fields, floats, readVarint, str, varints, WIRE_LEN, WIRE_VARINT, type WireField } from './wire.ts';
import { DTYPE, dtypeName, halfToFloat, bfloat16ToFloat } from './dtypes.ts';

/** Random access to bytes: a file (read on demand) or an in-memory buffer. */
export interface ByteSource {
  readonly size: number;
  /** True when read returns a new buffer the caller owns (a file); false when it returns a view of shared bytes (a buffer). */
  readonly readsCopy: boolean;
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/** Fill `out` from `fd` at `position` (readSync may return less than asked); returns the bytes read, fewer only at the end of the file. */
export function readFully(fd: number, out: Uint8Array, position: number): number {
  let got = 0;
  while (got < out.length) {
    const n = readSync(fd, out, got, out.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

export function fileSource(file: string): ByteSource {
  const fd = openSync(file, 'r');
  const size = fstatSync(fd).size;
  return {
    size,
    readsCopy: true,
    read(offset, length) {
      const buf = Buffer.allocUnsafe(length);
      const out = new Uint8Array(buf.buffer, buf.byteOffset, length);
      const got = readFully(fd, out, offset);
      if (got < length) throw new RangeError(`unexpected end of ${file} at byte ${offset + got}`);
      return out;
    },
    close: () => closeSync(fd),
  };
}

export function bufferSource(buf: Uint8Array): ByteSource {
  return { size: buf.length, readsCopy: false, read: (o, l) => buf.subarray(o, o + l), close() {} };
}

export interface ValueInfo {
  name: string;
  elemType: number | null;
  /** number = fixed size, string = symbolic dim_param, null = unknown. Undefined when no shape. */
  dims?: (number | string | null)[];
}

export type AttributeValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: TensorInfo }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'graph' | 'other'; value: null };

export interface NodeInfo {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, AttributeValue>;
  /** Byte range of the NodeProto in the model file (for verbatim copies). */
  range: [number, number];
}

export interface TensorLocation {
  /** 'raw' = raw_data bytes; 'float_data' etc. = a packed typed field; 'external' = data file. */
  kind: 'raw' | 'float_data' | 'int32_data' | 'int64_data' | 'double_data' | 'uint64_data' | 'external' | 'empty';
  /** Absolute byte range in the model file, or in the external file for 'external'. */
  offset: number;
  length: number;
  /** External data file, resolved against the model's folder. */
  file?: string;
}

export interface TensorInfo {
  name: string;
  dims: number[];
  dataType: number;
  location: TensorLocation;
  range: [number, number];
}

export interface OnnxModel {
  path: string | null;
  size: number;
  irVersion: number;
  producer: string;
  opsets: { domain: string; version: number }[];
  graphName: string;
  nodes: NodeInfo[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  valueInfo: ValueInfo[];
  initializers: Map<string, TensorInfo>;
  /** Byte ranges [valueStart, valueEnd) of every top-level `graph` field (usually one). */
  graphRanges: [number, number][];
  /** The source the model was scanned from; keep it open to read tensor data, close when done. */
  source: ByteSource;
}

/** The model's ai.onnx (default-domain) opset version; 0 when it declares none. */
export function defaultOpset(m: Pick<OnnxModel, 'opsets'>): number {
  return m.opsets.find((o) => o.domain === '')?.version ?? 0;
}

/** Scan fields of a message stored in src[start, end) reading only tag headers. */
export function* scanFields(src: ByteSource, start: number, end: number): Generator<WireField> {
  let pos = start;
  while (pos < end) {
    const hdr = src.read(pos, Math.min(22, end - pos));
    const tag = readVarint(hdr, 0);
    const field = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    let p = tag.next;
    let vStart: number;
    let vEnd: number;
    let varint = 0;
    let big = 0n;
    if (wire === WIRE_VARINT) {
      const v = readVarint(hdr, p);
      big = v.value;
      varint = Number(BigInt.asIntN(64, v.value));
      vStart = pos + p;
      vEnd = pos + v.next;
    } else if (wire === WIRE_LEN) {
      const len = readVarint(hdr, p);
      vStart = pos + len.next;
      vEnd = vStart + Number(len.value);
    } else if (wire === 5) {
      vStart = pos + p;
      vEnd = vStart + 4;
    } else if (wire === 1) {
      vStart = pos + p;
      vEnd = vStart + 8;
    } else {
      throw new RangeError(`unsupported wire type ${wire} at byte ${pos}`);
    }
    if (vEnd > end) throw new RangeError(`field ${field} at byte ${pos} runs past its message`);
    yield { field, wire, varint, big, start: vStart, end: vEnd, fieldStart: pos };
    pos = vEnd;
  }
}

function parseValueInfo(buf: Uint8Array, start: number, end: number): ValueInfo {
  const vi: ValueInfo = { name: '', elemType: null };
  for (const f of fields(buf, start, end)) {
    if (f.field === 1) vi.name = str(buf, f);
    else if (f.field === 2) {
      for (const t of fields(buf, f.start, f.end)) {
        if (t.field !== 1) continue; // tensor_type
        for (const tt of fields(buf, t.start, t.end)) {
          if (tt.field === 1) vi.elemType = tt.varint;
          else if (tt.field === 2) {
            vi.dims = [];
            for (const d of fields(buf, tt.start, tt.end)) {
              if (d.field !== 1) continue;
              let dim: number | string | null = null;
              for (const dv of fields(buf, d.start, d.end)) {
                if (dv.field === 1) dim = dv.varint;
                else if (dv.field === 2) dim = str(buf, dv);
              }
              vi.dims.push(dim);
            }
          }
        }
      }
    }
  }
  return vi;
}

const TENSOR_DATA_FIELDS: Record<number, TensorLocation['kind']> = {
  4: 'float_data',
  5: 'int32_data',
  7: 'int64_data',
  9: 'raw',
  10: 'double_data',
  11: 'uint64_data',
};

function parseTensor(
  src: ByteSource,
  start: number,
  end: number,
  modelDir: string | null,
  base = 0,
  buf?: Uint8Array,
): TensorInfo {
  const t: TensorInfo = { name: '', dims: [], dataType: 0, location: { kind: 'empty', offset: 0, length: 0 }, range: [base + start, base + end] };
  const external: Record<string, string> = {};
  let isExternal = false;
  const iter = buf ? fields(buf, start, end) : scanFields(src, start, end);
  const small = (f: WireField): Uint8Array => (buf ? buf : src.read(f.start, f.end - f.start));
  for (const f of iter) {
    const local = (g: WireField) => (buf ? g : { ...g, start: 0, end: g.end - g.start });
    if (f.field === 1) {
      const b = small(f);
      t.dims.push(...varints(b, local(f)));
    } else if (f.field === 2) t.dataType = f.varint;
    else if (f.field === 8) t.name = str(small(f), local(f));
    else if (f.field === 14) isExternal = f.varint === 1;
    else if (f.field === 13) {
      const b = small(f);
      const lf = local(f);
      let k = '';
      let v = '';
      for (const e of fields(b, lf.start, lf.end)) {
        if (e.field === 1) k = str(b, e);
        else if (e.field === 2) v = str(b, e);
      }
      external[k] = v;
    } else if (TENSOR_DATA_FIELDS[f.field] && f.wire === WIRE_LEN) {
      t.location = { kind: TENSOR_DATA_FIELDS[f.field], offset: base + f.start, length: f.end - f.start };
    }
  }
  if (isExternal) {
    const location = external.location;
    if (!location) throw new QuantlensError('MODEL', `tensor "${t.name}" is marked external but has no location`);
    const offset = Number(external.offset ?? 0);
    const length = external.length !== undefined ? Number(external.length) : -1;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < -1)
      throw new QuantlensError('MODEL', `tensor "${t.name}": external data offset "${external.offset}" / length "${external.length}" are not byte counts`);
    t.location = { kind: 'external', file: modelDir === null ? undefined : confinedExternalFile(modelDir, location, t.name), offset, length };
  }
  return t;
}

/**
 * An external-data location is a file inside the model's folder: never absolute, never leaving
 * it through `..`, and, once symlinks are resolved, still inside it. Otherwise a model file could
 * make `run` or `quantize` read (and copy into a quantized model) any file the user can read.
 */
export function confinedExternalFile(dir: string, location: string, tensor: string): string {
  const refuse = (why: string): never => {
    throw new QuantlensError('MODEL', `tensor "${tensor}": external data location "${location}" ${why}`, dir);
  };
  if (path.isAbsolute(location) || path.win32.isAbsolute(location)) refuse('is an absolute path; it must be a file in the model folder');
  const file = path.resolve(dir, location);
  const inside = (root: string, p: string) => {
    const rel = path.relative(root, p);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  if (!inside(dir, file)) refuse('leaves the model folder');
  if (existsSync(file) && !inside(realpathSync(dir), realpathSync(file))) refuse('is a symlink that leaves the model folder');
  return file;
}

function parseAttribute(buf: Uint8Array, start: number, end: number, modelDir: string | null, base: number, src: ByteSource): [string, AttributeValue] {
  let name = '';
  let type = 0;
  let f32 = 0;
  let i64 = 0;
  let s = '';
  let tensor: TensorInfo | null = null;
  const fl: number[] = [];
  const ints: number[] = [];
  const strs: string[] = [];
  for (const f of fields(buf, start, end)) {
    switch (f.field) {
      case 1: name = str(buf, f); break;
      case 20: type = f.varint; break;
      case 2: f32 = floats(buf, f)[0]; break;
      case 3: i64 = f.varint; break;
      case 4: s = str(buf, f); break;
      case 5: tensor = parseTensor(src, f.start, f.end, modelDir, base, buf); break;
      case 7: fl.push(...floats(buf, f)); break;
      case 8: ints.push(...varints(buf, f)); break;
      case 9: strs.push(str(buf, f)); break;
    }
  }
  const value: AttributeValue =
    type === 1 ? { type: 'float', value: f32 }
    : type === 2 ? { type: 'int', value: i64 }
    : type === 3 ? { type: 'string', value: s }
    : type === 4 && tensor ? { type: 'tensor', value: tensor }
    : type === 6 ? { type: 'floats', value: fl }
    : type === 7 ? { type: 'ints', value: ints }
    : type === 8 ? { type: 'strings', value: strs }
    : type === 5 ? { type: 'graph', value: null }
    : { type: 'other', value: null };
  return [name, value];
}

function parseNode(src: ByteSource, start: number, end: number, modelDir: string | null): NodeInfo {
  const buf = src.read(start, end - start);
  const node: NodeInfo = { name: '', opType: '', domain: '', inputs: [], outputs: [], attributes: {}, range: [start, end] };
  for (const f of fields(buf)) {
    if (f.field === 1) node.inputs.push(str(buf, f));
    else if (f.field === 2) node.outputs.push(str(buf, f));
    else if (f.field === 3) node.name = str(buf, f);
    else if (f.field === 4) node.opType = str(buf, f);
    else if (f.field === 7) node.domain = str(buf, f);
    else if (f.field === 5) {
      // Offsets of tensors inside attributes are made absolute by passing the node's start.
      const [k, v] = parseAttribute(buf, f.start, f.end, modelDir, start, src);
      node.attributes[k] = v;
    }
  }
  if (node.domain === 'ai.onnx') node.domain = '';
  return node;
}

/** Scan an ONNX model from a file path or bytes. Throws QuantlensError('MODEL') on corrupt input. */
export function readOnnxModel(model: string | Uint8Array, opts: { modelDir?: string } = {}): OnnxModel {
  const isPath = typeof model === 'string';
  let src: ByteSource;
  try {
    src = isPath ? fileSource(model) : bufferSource(model);
  } catch (e) {
    throw new QuantlensError('MODEL', `cannot open ONNX model: ${(e as Error).message}`, isPath ? model : undefined);
  }
  const modelDir = opts.modelDir ?? (isPath ? path.dirname(model) : null);
  const m: OnnxModel = {
    path: isPath ? model : null,
    size: src.size,
    irVersion: 0,
    producer: '',
    opsets: [],
    graphName: '',
    nodes: [],
    inputs: [],
    outputs: [],
    valueInfo: [],
    initializers: new Map(),
    graphRanges: [],
    source: src,
  };
  try {
    for (const f of scanFields(src, 0, src.size)) {
      if (f.field === 1) m.irVersion = f.varint;
      else if (f.field === 2 && f.wire === WIRE_LEN) m.producer = str(src.read(f.start, f.end - f.start), { ...f, start: 0, end: f.end - f.start });
      else if (f.field === 8 && f.wire === WIRE_LEN) {
        const b = src.read(f.start, f.end - f.start);
        let domain = '';
        let version = 0;
        for (const o of fields(b)) {
          if (o.field === 1) domain = str(b, o);
          else if (o.field === 2) version = o.varint;
        }
        m.opsets.push({ domain: domain === 'ai.onnx' ? '' : domain, version });
      } else if (f.field === 7 && f.wire === WIRE_LEN) {
        // Several `graph` fields merge (protobuf semantics); quantlens appends outputs that way.
        m.graphRanges.push([f.start, f.end]);
        for (const g of scanFields(src, f.start, f.end)) {
          if (g.wire !== WIRE_LEN) continue;
          if (g.field === 1) m.nodes.push(parseNode(src, g.start, g.end, modelDir));
          else if (g.field === 2) m.graphName = str(src.read(g.start, g.end - g.start), { ...g, start: 0, end: g.end - g.start });
          else if (g.field === 5) {
            const t = parseTensor(src, g.start, g.end, modelDir);
            m.initializers.set(t.name, t);
          } else if (g.field === 11 || g.field === 12 || g.field === 13) {
            const b = src.read(g.start, g.end - g.start);
            const vi = parseValueInfo(b, 0, b.length);
            (g.field === 11 ? m.inputs : g.field === 12 ? m.outputs : m.valueInfo).push(vi);
          }
        }
      }
    }
  } catch (e) {
    src.close();
    if (e instanceof QuantlensError) throw e;
    throw new QuantlensError('MODEL', `corrupt ONNX model (${(e as Error).message})`, isPath ? model : undefined);
  }
  if (m.nodes.length === 0) {
    src.close();
    throw new QuantlensError('MODEL', 'not an ONNX model (no graph nodes found)', isPath ? model : undefined);
  }
  // Graph inputs listed also as initializers (old exporters) are weights, not runtime inputs.
  m.inputs = m.inputs.filter((i) => !m.initializers.has(i.name));
  return m;
}

/**
 * The raw little-endian bytes of a tensor as stored (decoding packed fields where needed), in a
 * buffer the caller owns: a file read already is one, a view of an in-memory model is copied.
 */
export function readTensorBytes(m: OnnxModel, t: TensorInfo): Uint8Array {
  const loc = t.location;
  if (loc.kind === 'empty') return new Uint8Array(0);
  if (loc.kind === 'external') {
    if (!loc.file) throw new QuantlensError('UNSUPPORTED', `not supported: tensor "${t.name}" has external data but the model was given as bytes without a folder`);
    const ext = fileSource(loc.file);
    try {
      const length = loc.length >= 0 ? loc.length : ext.size - loc.offset;
      return ext.read(loc.offset, length);
    } finally {
      ext.close();
    }
  }
  const bytes = m.source.read(loc.offset, loc.length);
  const owned = () => (m.source.readsCopy ? bytes : bytes.slice());
  if (loc.kind === 'raw') return owned();
  const f: WireField = { field: 0, wire: WIRE_LEN, varint: 0, big: 0n, start: 0, end: bytes.length, fieldStart: 0 };
  if (loc.kind === 'float_data') {
    if (t.dataType === DTYPE.float) return owned();
    // float16/bfloat16 are stored as int32_data per the spec; float_data only holds floats.
    return new Uint8Array(Float32Array.from(floats(bytes, f)).buffer);
  }
  if (loc.kind === 'double_data') return owned();
  const vals = varints(bytes, f);
  switch (t.dataType) {
    case DTYPE.int64:
      return new Uint8Array(BigInt64Array.from(vals.map(BigInt)).buffer);
    case DTYPE.uint64:
      return new Uint8Array(BigUint64Array.from(vals.map((v) => BigInt.asUintN(64, BigInt(v)))).buffer);
    case DTYPE.int32:
      return new Uint8Array(Int32Array.from(vals).buffer);
    case DTYPE.float16:
    case DTYPE.bfloat16:
    case DTYPE.uint16:
    case DTYPE.int16:
      return new Uint8Array(Uint16Array.from(vals).buffer);
    case DTYPE.int8:
    case DTYPE.uint8:
    case DTYPE.bool:
      return Uint8Array.from(vals);
    default:
      throw new QuantlensError('UNSUPPORTED', `tensor "${t.name}" stores ${dtypeName(t.dataType)} in ${loc.kind}`);
  }
}

/** A float tensor (float32, float16, bfloat16 or double) as Float32Array. */
export function readTensorFloat32(m: OnnxModel, t: TensorInfo): Float32Array {
  const bytes = readTensorBytes(m, t);
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  switch (t.dataType) {
    case DTYPE.float:
      return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.length / 4);
    case DTYPE.float16:
      return halfToFloat(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2));
    case DTYPE.bfloat16:
      return bfloat16ToFloat(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2));
    case DTYPE.double:
      return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.length / 8));
    default:
      throw new QuantlensError('UNSUPPORTED', `tensor "${t.name}" is ${dtypeName(t.dataType)}, not a float type`);
  }
}

/** Constant values: initializers and Constant nodes' `value` tensors, by output name. */
export function constantTensor(m: OnnxModel, name: string): TensorInfo | undefined {
  const init = m.initializers.get(name);
  if (init) return init;
  for (const n of m.nodes) {
    if (n.opType === 'Constant' && n.outputs[0] === name) {
      const v = n.attributes.value;
      if (v?.type === 'tensor') return v.value;
    }
  }
  return undefined;
}
