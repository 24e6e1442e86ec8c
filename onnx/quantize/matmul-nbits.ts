/**
 * ONNX Runtime's own block quantization (com.microsoft MatMulNBits): q4 (transformers.js
 * model_q4: 4 bits, block 32, symmetric) and int8 (8 bits, weight-only).
 *
 * Per output column n of B and block of `blockSize` rows along K (MLAS BlockwiseQuantizer):
 *  - symmetric: m = the block value of largest magnitude, sign kept (the min wins a tie);
 *    scale = -m / 2^(bits-1); no zero_points input, so ORT uses 2^(bits-1);
 *  - asymmetric: lo = min(min, 0), hi = max(max, 0); scale = (hi - lo) / (2^bits - 1);
 *    zp = round(-lo / scale) clamped to the code range; zero_points packed like B;
 *  - q = clamp(roundf(v * (1/scale) + zp), 0, 2^bits - 1)  (roundf: half away from zero).
 *  - B is [N, k_blocks, blockSize*bits/8] uint8, codes packed along K, low nibble first; rows
 *    past K in the last block are written as zp (dequantize to 0; ORT ignores them anyway).
 * Every node gets accuracy_level = 0, so A stays float: accuracy_level 4 lets the CPU kernel
 * quantize activations to int8 per block (relative error ~5e-3), which is not weight-only
 * quantization. g_idx is never written (with it, MatMulNBits ignores uint8 zero points).
 */
import { roundHalfAway, type VariantEmitter, type WeightPlan } from './variants.ts';

export interface NBitsQuantized {
  /** [N, kBlocks, blockSize * bits / 8] */
  packed: Uint8Array;
  /** [N, kBlocks] */
  scales: Float32Array;
  /** Unpacked zero point per block [N, kBlocks] (2^(bits-1) when symmetric). */
  zeroPoints: Uint8Array;
  /** Packed uint8 zero points [N, ceil(kBlocks * bits / 8)], only when asymmetric. */
  packedZeroPoints?: Uint8Array;
  kBlocks: number;
}

export function quantizeNBits(b: Float32Array, K: number, N: number, bits: 4 | 8, blockSize: number, symmetric: boolean): NBitsQuantized {
  const f = Math.fround;
  const kBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const maxq = 2 ** bits - 1;
  const half = 2 ** (bits - 1);
  const packed = new Uint8Array(N * kBlocks * blob);
  const scales = new Float32Array(N * kBlocks);
  const zeroPoints = new Uint8Array(N * kBlocks);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < kBlocks; j++) {
      const k0 = j * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let mn = 3.4028234663852886e38;
      let mx = -mn;
      for (let k = k0; k < k1; k++) {
        const v = b[k * N + n];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      let scale: number;
      let zp: number;
      if (symmetric) {
        const m = Math.abs(mx) > Math.abs(mn) ? mx : mn;
        scale = f(-m / half);
        zp = half;
      } else {
        mn = Math.min(mn, 0);
        mx = Math.max(mx, 0);
        scale = f(f(mx - mn) / maxq);
        const zpf = scale !== 0 ? f(0 - f(mn / scale)) : mn;
        zp = zpf < 0 ? 0 : zpf > maxq ? maxq : roundHalfAway(zpf);
      }
      scales[n * kBlocks + j] = scale;
      zeroPoints[n * kBlocks + j] = zp;
      const rs = scale !== 0 ? f(1 / scale) : 0;
      const base = (n * kBlocks + j) * blob;
      for (let i = 0; i < blockSize; i++) {
        const k = k0 + i;
        const q = k < K ? Math.min(maxq, Math.max(0, roundHalfAway(f(f(b[k * N + n] * rs) + zp)))) : zp;
        if (bits === 8) packed[base + i] = q;
        else packed[base + (i >> 1)] |= i & 1 ? q << 4 : q;
      }
    }
  }
  const out: NBitsQuantized = { packed, scales, zeroPoints, kBlocks };
  if (!symmetric) {
    const perRow = Math.ceil((kBlocks * bits) / 8);
    const pz = new Uint8Array(N * perRow);
    for (let n = 0; n < N; n++)
      for (let j = 0; j < kBlocks; j++) {
        const z = zeroPoints[n * kBlocks + j];
        if (bits === 8) pz[n * perRow + j] = z;
        else pz[n * perRow + (j >> 1)] |= j & 1 ? z << 4 : z;
      }
    out.packedZeroPoints = pz;
  }
  return out;
}

export function nbitsEmitter(bits: 4 | 8, blockSize: number, symmetric: boolean): VariantEmitter {
  return {
    weight(weightName, K, N, ctx): WeightPlan {
      const kBlocks = Math.ceil(K / blockSize);
      const tag = bits === 4 ? 'q4' : 'q8';
      const q = ctx.fresh(`${weightName}_${tag}`);
      const s = ctx.fresh(`${weightName}_scales`);
      const z = symmetric ? '' : ctx.fresh(`${weightName}_zero_points`);
      const tensors = [
        { name: q, type: 'uint8' as const, dims: [N, kBlocks, (blockSize * bits) / 8] },
        { name: s, type: 'float' as const, dims: [N, kBlocks] },
      ];
      if (!symmetric) tensors.push({ name: z, type: 'uint8' as const, dims: [N, Math.ceil((kBlocks * bits) / 8)] });
      return {
        tensors,
        produce(b) {
          const r = quantizeNBits(b, K, N, bits, blockSize, symmetric);
          return symmetric ? { [q]: r.packed, [s]: r.scales } : { [q]: r.packed, [s]: r.scales, [z]: r.packedZeroPoints! };
        },
      };
    },
    nodes(plan, a, y, K, N, mainName) {
      return [
        {
          opType: 'MatMulNBits',
          domain: 'com.microsoft',
          inputs: [a, ...plan.tensors.map((t) => t.name)],
          outputs: [y],
          name: mainName,
          attrs: { K, N, bits, block_size: blockSize, accuracy_level: 0 },
        },
      ];
    },
  };
}
