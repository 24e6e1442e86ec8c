/**
 * Protocol-buffer wire format, the minimum ONNX needs. quantlens never decodes and re-encodes a
 * whole model (generic re-encoders silently drop fields they don't know); it scans messages
 * for the fields it needs and writes new fields or fragments itself.
 */
import { GrowableArray } from '../core/growable-array.ts';

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** One field of a message: its number, wire type and where its value lies in the buffer. */
export interface WireField {
  field: number;
  wire: number;
  /** For WIRE_VARINT: the value (exact up to 2^53; use `big` beyond). */
  varint: number;
  big: bigint;
  /** For WIRE_LEN / I32 / I64: [start, end) of the value bytes (absolute offsets in the buffer). */
  start: number;
  end: number;
  /** [start, end) of the whole field including its tag. */
  fieldStart: number;
}

export function readVarint(buf: Uint8Array, pos: number): { value: bigint; next: number } {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new RangeError('truncated varint');
    const b = buf[pos++];
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) break;
    shift += 7n;
    if (shift > 70n) throw new RangeError('varint too long');
  }
  return { value: result, next: pos };
}

/** Iterate the fields of the message stored in buf[start, end). */
export function* fields(buf: Uint8Array, start = 0, end = buf.length): Generator<WireField> {
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const tag = readVarint(buf, pos);
    pos = tag.next;
    const field = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    let varint = 0;
    let big = 0n;
    let vStart = pos;
    let vEnd = pos;
    if (wire === WIRE_VARINT) {
      const v = readVarint(buf, pos);
      big = v.value;
      varint = Number(BigInt.asIntN(64, v.value));
      pos = v.next;
      vEnd = pos;
    } else if (wire === WIRE_LEN) {
      const len = readVarint(buf, pos);
      vStart = len.next;
      vEnd = vStart + Number(len.value);
      pos = vEnd;
    } else if (wire === WIRE_I32) {
      vEnd = pos + 4;
      pos = vEnd;
    } else if (wire === WIRE_I64) {
      vEnd = pos + 8;
      pos = vEnd;
    } else {
      throw new RangeError(`unsupported wire type ${wire} at byte ${fieldStart}`);
    }
    if (vEnd > end) throw new RangeError(`field ${field} runs past the end of its message (byte ${fieldStart})`);
    yield { field, wire, varint, big, start: vStart, end: vEnd, fieldStart };
  }
}

const utf8 = new TextDecoder();
export function str(buf: Uint8Array, f: WireField): string {
  return utf8.decode(buf.subarray(f.start, f.end));
}

/** Decode a packed (or single unpacked) varint field into numbers. */
export function varints(buf: Uint8Array, f: WireField): number[] {
  if (f.wire === WIRE_VARINT) return [f.varint];
  const out: number[] = [];
  let pos = f.start;
  while (pos < f.end) {
    const v = readVarint(buf, pos);
    out.push(Number(BigInt.asIntN(64, v.value)));
    pos = v.next;
  }
  return out;
}

export function floats(buf: Uint8Array, f: WireField): number[] {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  if (f.wire === WIRE_I32) return [dv.getFloat32(f.start, true)];
  const out: number[] = [];
  for (let p = f.start; p < f.end; p += 4) out.push(dv.getFloat32(p, true));
  return out;
}

/** A float32's four little-endian bytes, written through one shared view. */
const FLOAT_BYTES = new Uint8Array(4);
const FLOAT_VIEW = new DataView(FLOAT_BYTES.buffer);

/** A growable protobuf encoder. */
export class ProtoWriter {
  private readonly out = new GrowableArray(Uint8Array, 256);

  rawVarint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      this.out.push(b);
    } while (x);
    return this;
  }

  tag(field: number, wire: number): this {
    return this.rawVarint((field << 3) | wire);
  }

  varint(field: number, v: number | bigint): this {
    return this.tag(field, WIRE_VARINT).rawVarint(v);
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LEN).rawVarint(data.length);
    this.out.pushAll(data);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  float(field: number, v: number): this {
    this.tag(field, WIRE_I32);
    FLOAT_VIEW.setFloat32(0, v, true);
    this.out.pushAll(FLOAT_BYTES);
    return this;
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const w = new ProtoWriter();
    build(w);
    return this.bytes(field, w.finish());
  }

  packedVarints(field: number, values: ArrayLike<number | bigint>): this {
    const w = new ProtoWriter();
    for (let i = 0; i < values.length; i++) w.rawVarint(values[i]);
    return this.bytes(field, w.finish());
  }

  packedFloats(field: number, values: ArrayLike<number>): this {
    return this.bytes(field, new Uint8Array(Float32Array.from(values).buffer));
  }

  /** Append already-encoded bytes verbatim (e.g. a field copied from an existing model). */
  raw(data: Uint8Array): this {
    this.out.pushAll(data);
    return this;
  }

  get length(): number {
    return this.out.length;
  }

  finish(): Uint8Array {
    return this.out.view().slice();
  }
}
