/**
 * The float weight Ŵ [K, N] (row-major, as ONNX MatMul's B) that a quantized linear layer
 * effectively applies, recomputed in JS from its stored initializers. The straight-through
 * gradient with respect to the activation is dY·Ŵᵀ, so Ŵ must be exactly what ONNX Runtime
 * multiplies by (the tests compare it with ORT run on an identity matrix):
 *  - MatMulNBits: (q − zp)·scale per block of K, one float32 product (MLAS dequantization).
 *  - MatMulBnb4: table[code]·absmax per flat block of W = Bᵀ (bitsandbytes dequantize_4bit).
 *  - llm-int8 outlier path: (CB·SCB)·(1/127); its int8 path scales the same product by
 *    127·6.200124e-5 (bnb's 1/127² constant is 1.8e-5 too large), see quantized-patterns.ts.
 *  - dynamic int8 (MatMulInteger): (q − zp)·scale, per tensor or per output column.
 */
import { QuantlensError } from '../../core/errors.ts';
import { dequantize4bit, type FourBitType } from '../quantize/nf4.ts';
import { transposeMatrix } from '../matrix.ts';

/**
 * MatMulNBits storage → Ŵ [K, N]. packed [N, kBlocks, blockSize·bits/8] (4-bit: low nibble
 * first), scales [N, kBlocks], packedZeroPoints [N, ceil(kBlocks·bits/8)] uint8 or absent
 * (then zp = 2^(bits−1)).
 */
export function dequantizeNBits(
  packed: Uint8Array,
  scales: Float32Array,
  packedZeroPoints: Uint8Array | undefined,
  K: number,
  N: number,
  bits: number,
  blockSize: number,
): Float32Array {
  if (bits !== 4 && bits !== 8) throw new QuantlensError('UNSUPPORTED', `MatMulNBits with bits=${bits}: only 4 and 8 have a gradient`);
  const kBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((kBlocks * bits) / 8);
  if (packed.length !== N * kBlocks * blob) throw new QuantlensError('MODEL', `MatMulNBits weight has ${packed.length} bytes, expected ${N * kBlocks * blob} for K=${K} N=${N} bits=${bits} block_size=${blockSize}`);
  if (scales.length !== N * kBlocks) throw new QuantlensError('MODEL', `MatMulNBits scales have ${scales.length} values, expected ${N * kBlocks}`);
  if (packedZeroPoints && packedZeroPoints.length !== N * zpRow) throw new QuantlensError('MODEL', `MatMulNBits zero_points have ${packedZeroPoints.length} bytes, expected ${N * zpRow}`);
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < kBlocks; j++) {
      let zp = 2 ** (bits - 1);
      if (packedZeroPoints) {
        const z = packedZeroPoints[n * zpRow + (bits === 8 ? j : j >> 1)];
        zp = bits === 8 ? z : j & 1 ? z >> 4 : z & 15;
      }
      const scale = scales[n * kBlocks + j];
      const base = (n * kBlocks + j) * blob;
      for (let i = 0; i < blockSize; i++) {
        const k = j * blockSize + i;
        if (k >= K) break;
        const byte = packed[base + (bits === 8 ? i : i >> 1)];
        const q = bits === 8 ? byte : i & 1 ? byte >> 4 : byte & 15;
        out[k * N + n] = Math.fround((q - zp) * scale);
      }
    }
  }
  return out;
}

/** MatMulBnb4 storage (codes of W = Bᵀ [N, K] flattened, absmax per block) → Ŵ [K, N]. */
export function dequantizeBnb4(packed: Uint8Array, absmax: Float32Array, K: number, N: number, blockSize: number, type: FourBitType): Float32Array {
  if (packed.length !== Math.ceil((N * K) / 2) || absmax.length !== Math.ceil((N * K) / blockSize)) {
    throw new QuantlensError('MODEL', `MatMulBnb4 storage (${packed.length} code bytes, ${absmax.length} absmax) does not fit K=${K} N=${N} block_size=${blockSize}`);
  }
  return transposeMatrix(dequantize4bit(packed, absmax, N * K, blockSize, type), N, K);
}

/** llm-int8 outlier-path weight: f(f(CB[k,n]·SCB[n])·inv127), CB [K, N] int8. */
export function dequantizeVectorwise(cb: Int8Array, scb: Float32Array, K: number, N: number, inv127: number): Float32Array {
  const f = Math.fround;
  const c = f(inv127);
  const out = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) out[k * N + n] = f(f(cb[k * N + n] * scb[n]) * c);
  return out;
}

/**
 * MatMulInteger weight [K, N] (int8 or uint8 values) with zero point(s) and scale(s), each a
 * scalar or one per output column N → Ŵ [K, N] = f((q − zp)·scale).
 */
export function dequantizeInteger(q: Int8Array | Uint8Array, zeroPoints: ArrayLike<number>, scales: ArrayLike<number>, K: number, N: number): Float32Array {
  const pick = (a: ArrayLike<number>, n: number, what: string) => {
    if (a.length === 1) return a[0];
    if (a.length === N) return a[n];
    throw new QuantlensError('UNSUPPORTED', `dynamic int8 ${what} has ${a.length} values; only per-tensor or per-column (${N}) have a gradient`);
  };
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    const zp = pick(zeroPoints, n, 'weight zero point');
    const s = pick(scales, n, 'weight scale');
    for (let k = 0; k < K; k++) out[k * N + n] = Math.fround((q[k * N + n] - zp) * s);
  }
  return out;
}
