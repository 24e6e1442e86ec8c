/** ONNX TensorProto.DataType numbers and conversions between them and JS typed arrays. */
export const DTYPE = {
  float: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  double: 11,
  uint32: 12,
  uint64: 13,
  bfloat16: 16,
} as const;

export type DTypeName = keyof typeof DTYPE;

export function dtypeName(code: number): string {
  for (const [k, v] of Object.entries(DTYPE)) if (v === code) return k;
  return `dtype(${code})`;
}

/** float32 bits of a half-precision bit pattern (exact: float16 ⊂ float32; NaN payloads kept). */
function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0; // ±0
    // Subnormal half = mant·2^-24: normalise the mantissa, lowering the exponent per shift.
    let e = 113;
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // ±Inf, NaN
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // rebias 15 → 127
}

let halfTable: Uint32Array | null = null;

/**
 * IEEE 754 half → float32, exact for every half value, through a 256 KiB lookup table (activation
 * tensors of fp16 models pass through here on the hot path). Writes into `out` when given.
 */
export function halfToFloat(h: Uint16Array, out: Float32Array = new Float32Array(h.length)): Float32Array {
  if (!halfTable) {
    halfTable = new Uint32Array(65536);
    for (let x = 0; x < 65536; x++) halfTable[x] = halfBitsToFloatBits(x);
  }
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < h.length; i++) bits[i] = halfTable[h[i]];
  return out;
}

/** float32 → IEEE half, round to nearest even. */
export function floatToHalf(f: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(f.length);
  const fb = new Float32Array(1);
  const ib = new Uint32Array(fb.buffer);
  for (let i = 0; i < f.length; i++) {
    fb[0] = f[i];
    const x = ib[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rem > halfway || (rem === halfway && half & 1)) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
    out[i] = sign | half;
  }
  return out;
}

export function bfloat16ToFloat(h: Uint16Array, out: Float32Array = new Float32Array(h.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return out;
}
