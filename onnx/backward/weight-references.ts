/**
 * How an attribution graph carries the model's weights.
 *  - 'verbatim' (the builder's default): as the model does (inline stays inline, external data
 *    stays referenced), so the graph's bytes load as the model's do.
 *  - 'referenced' (what the salience path uses, graph-cache.ts): every initializer stored inline as
 *    raw_data becomes an external-data reference INTO THE MODEL FILE ITSELF (location = the
 *    model's file name, offset/length = where its raw bytes already are; ONNX external data is
 *    just "these bytes of that file", and a TensorProto's raw_data is little-endian like it).
 *    Initializers already in external data keep their references. So the graph's protobuf holds
 *    no weight at all (KBs, never near protobuf's 2 GiB limit), nothing is copied in JS, and the
 *    cache stores only the graph. ONNX Runtime resolves the references against the folder passed
 *    as `session.model_external_initializers_file_folder_path` (the model's folder) — a model given
 *    as bytes has no folder of its own.
 *  - 'embedded': every initializer inline (external data read into raw_data): the graph stands
 *    alone, as graphs of in-memory models must (and the tests' reference path).
 * Small tensors (< 1 KiB) and typed-field tensors (float_data, int64_data…) are copied as they are.
 */
import path from 'node:path';
import { readTensorBytes, scanFields, type OnnxModel, type TensorInfo } from '../model-reader.ts';
import { ProtoWriter } from '../wire.ts';

export type WeightMode = 'verbatim' | 'referenced' | 'embedded';

const TENSOR_RAW_DATA = 9;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;
const EXTERNAL = 1;
const MIN_REFERENCED_BYTES = 1024;

/** Initializers by the start of their TensorProto in the file (what the graph scan sees). */
export function initializersByStart(m: OnnxModel): Map<number, TensorInfo> {
  return new Map([...m.initializers.values()].map((t) => [t.range[0], t]));
}

function copyFieldsExcept(m: OnnxModel, t: TensorInfo, w: ProtoWriter, drop: Set<number>): void {
  for (const f of scanFields(m.source, t.range[0], t.range[1])) {
    if (!drop.has(f.field)) w.raw(m.source.read(f.fieldStart, f.end - f.fieldStart));
  }
}

/**
 * The TensorProto of initializer `t` as the graph should carry it under `mode`, or null when it
 * is copied verbatim.
 */
export function rewrittenInitializer(m: OnnxModel, t: TensorInfo, mode: WeightMode): Uint8Array | null {
  const loc = t.location;
  if (mode === 'verbatim') return null;
  if (mode === 'referenced' && loc.kind === 'raw' && m.path && loc.length >= MIN_REFERENCED_BYTES) {
    const w = new ProtoWriter();
    copyFieldsExcept(m, t, w, new Set([TENSOR_RAW_DATA]));
    const entry = (k: string, v: string) => w.message(TENSOR_EXTERNAL_DATA, (e) => e.string(1, k).string(2, v));
    entry('location', path.basename(m.path));
    entry('offset', String(loc.offset));
    entry('length', String(loc.length));
    w.varint(TENSOR_DATA_LOCATION, EXTERNAL);
    return w.finish();
  }
  if (mode === 'embedded' && loc.kind === 'external') {
    const w = new ProtoWriter();
    copyFieldsExcept(m, t, w, new Set([TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION]));
    w.bytes(TENSOR_RAW_DATA, readTensorBytes(m, t));
    return w.finish();
  }
  return null;
}
