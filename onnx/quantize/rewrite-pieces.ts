/**
 * Byte-level pieces of the streaming rewrite (rewrite.ts): output pieces whose exact lengths are
 * known before writing, TensorProto headers, and a sequential file writer that copies ranges of
 * the source in chunks. Nothing here knows about quantization.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { TypedData } from '../builder.ts';
import { fileSource, type ByteSource, type TensorInfo } from '../model-reader.ts';
import { fields, ProtoWriter, WIRE_LEN } from '../wire.ts';
import type { NewTensor, WeightPlan } from './variants.ts';
import type { FloatScratch, SourceWeight } from './weight-source.ts';

const CHUNK = 8 << 20;
export const BYTES_PER: Record<string, number> = { float: 4, float16: 2, uint8: 1, int8: 1, int64: 8, int32: 4 };

/** One distinct weight's plan: the new tensors and where the float weight comes from. */
export interface PlanEntry {
  key: string;
  plan: WeightPlan;
  /** The weight as stored, its values in `scratch` where possible (null for plans that need no source weight). */
  read(scratch: FloatScratch): SourceWeight | null;
  /** Elements `read` puts in the scratch buffer (float32 weights; 0 otherwise), to size it once. */
  scratchElements: number;
}

/** A piece of output: exact byte length known before writing. */
export type Piece =
  | { kind: 'copy'; start: number; end: number }
  | { kind: 'bytes'; data: Uint8Array }
  | { kind: 'rehome'; header: Uint8Array; tensor: TensorInfo; dataOffset: number }
  | { kind: 'new'; header: Uint8Array; rawLength: number; tensor: NewTensor; plan: PlanEntry; external: boolean; dataOffset: number };

export function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function pieceLength(p: Piece): number {
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
export function tensorHeader(name: string, dims: number[], dataType: number, external?: { location: string; offset: number; length: number }): Uint8Array {
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

/** Wrap a GraphProto field payload as field `fieldNo` (5 = initializer). */
export function asField(fieldNo: number, payload: Uint8Array, rawLength = 0): Uint8Array {
  const w = new ProtoWriter();
  w.tag(fieldNo, WIRE_LEN).rawVarint(payload.length + rawLength);
  w.raw(payload);
  return w.finish();
}

/** Sequential writer with a small buffer; copies ranges from a ByteSource in chunks. */
export class SyncWriter {
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

export function bytesOf(d: TypedData): Uint8Array {
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** A TensorProto in external data, copied verbatim except its external_data entries. */
export function rehomePiece(src: ByteSource, start: number, end: number, t: TensorInfo, claim: (length: number) => { at: number; location: string }): Piece {
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

export function copyTensorData(t: TensorInfo, data: SyncWriter): void {
  const src = fileSource(t.location.file!);
  try {
    const length = t.location.length >= 0 ? t.location.length : src.size - t.location.offset;
    data.copy(src, t.location.offset, t.location.offset + length);
  } finally {
    src.close();
  }
}
