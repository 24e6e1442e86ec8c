/**
 * quantlens's reference dequantization of stored codes, for files it did not write (prebuilt
 * variants, onnxruntime-genai builds) as well as its own: the weight [K, N] row-major (ONNX
 * MatMul's B) that each quantized node means. Tests compare it with the weight ONNX Runtime
 * actually applies (the node run on an identity input).
 */
import { dequantize4bit, type FourBitType } from './nf4.ts';

/** MatMulNBits: B [N, kBlocks, blockSize·bits/8] codes (low nibble first), scales [N·kBlocks], packed zero points or 2^(bits-1). */
export function dequantizeNBits(packed: Uint8Array, scales: Float32Array, zeroPoints: Uint8Array | null, K: number, N: number, bits: number, blockSize: number): Float32Array {
  const kBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((kBlocks * bits) / 8);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const j = Math.floor(k / blockSize);
      const i = k % blockSize;
      const code = (packed[(n * kBlocks + j) * blob + Math.floor(i / perByte)] >> ((i % perByte) * bits)) & mask;
      const z = zeroPoints ? (zeroPoints[n * zpRow + Math.floor(j / perByte)] >> ((j % perByte) * bits)) & mask : 2 ** (bits - 1);
      out[k * N + n] = Math.fround((code - z) * scales[n * kBlocks + j]);
    }
  return out;
}

/** MatMulBnb4: codes of W = Bᵀ flattened [N, K] (high nibble first), absmax per block. */
export function dequantizeBnb4(packed: Uint8Array, absmax: Float32Array, K: number, N: number, blockSize: number, type: FourBitType): Float32Array {
  const w = dequantize4bit(packed, absmax, K * N, blockSize, type);
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[k * N + n] = w[n * K + k];
  return out;
}

/** Dynamic quantization's weight: (q − zero point) · scale, per tensor or per column n. */
export function dequantizeInteger(q: Int8Array | Uint8Array, zeroPoint: ArrayLike<number>, scale: ArrayLike<number>, N: number): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const n = i % N;
    const z = zeroPoint.length > 1 ? zeroPoint[n] : (zeroPoint[0] ?? 0);
    const s = scale.length > 1 ? scale[n] : scale[0];
    out[i] = Math.fround((q[i] - z) * s);
  }
  return out;
}
