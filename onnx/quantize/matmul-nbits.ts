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
import { forEachRowStrip, type SourceWeight } from './weight-source.ts';

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

/** Rows of W = Bᵀ per strip (weight-source.ts): each row is one column n of B, contiguous along K. */
const STRIP_ROWS = 32;

/**
 * MatMulNBits quantization of a weight in either stored layout: B [K, N] block-rows at a time (every column's
 * block j at once, rows of B read contiguously), W = Bᵀ [N, K] a row (one column of B) at a time.
 */
export function quantizeNBitsWeight(w: SourceWeight, bits: 4 | 8, blockSize: number, symmetric: boolean): NBitsQuantized {
  const { K, N } = w;
  const kBlocks = Math.ceil(K / blockSize);
  const out: NBitsQuantized = {
    packed: new Uint8Array(N * kBlocks * ((blockSize * bits) / 8)),
    scales: new Float32Array(N * kBlocks),
    zeroPoints: new Uint8Array(N * kBlocks),
    kBlocks,
  };
  const spec: BlockSpec = { K, bits, blockSize, symmetric, maxq: 2 ** bits - 1, half: 2 ** (bits - 1), blob: (blockSize * bits) / 8 };
  if (w.layout === 'KN') quantizeColumns(w.data, N, spec, out);
  else
    forEachRowStrip(w, STRIP_ROWS, (strip, n0, count) => {
      for (let r = 0; r < count; r++) for (let j = 0; j < kBlocks; j++) quantizeRowBlock(strip, r * K, n0 + r, j, spec, out);
    });
  if (!symmetric) out.packedZeroPoints = packZeroPoints(out.zeroPoints, N, kBlocks, bits);
  return out;
}

interface BlockSpec {
  K: number;
  bits: number;
  blockSize: number;
  symmetric: boolean;
  maxq: number;
  half: number;
  /** Bytes of one block's codes. */
  blob: number;
}

const F32_MAX = 3.4028234663852886e38;

/** Scale and zero point of a block from its min and max (see the header). */
function blockScale(mn: number, mx: number, s: BlockSpec): { scale: number; zp: number } {
  const f = Math.fround;
  if (s.symmetric) {
    const m = Math.abs(mx) > Math.abs(mn) ? mx : mn;
    return { scale: f(-m / s.half), zp: s.half };
  }
  mn = Math.min(mn, 0);
  mx = Math.max(mx, 0);
  const scale = f(f(mx - mn) / s.maxq);
  const zpf = scale !== 0 ? f(0 - f(mn / scale)) : mn;
  return { scale, zp: zpf < 0 ? 0 : zpf > s.maxq ? s.maxq : roundHalfAway(zpf) };
}

/**
 * The code of v: roundf(v · rs + zp) clamped to [0, maxq], in float32 as MLAS. roundf then the
 * clamp is floor(y + 0.5) then the clamp: for y < 0 both give 0, y + 0.5 is exact for a float32 y,
 * and NaN gives 0 (as a Uint8Array store of NaN did).
 */
function code(v: number, rs: number, zp: number, maxq: number): number {
  const q = Math.floor(Math.fround(Math.fround(v * rs) + zp) + 0.5);
  return q > maxq ? maxq : q > 0 ? q | 0 : 0;
}

/** Block j of row n of W (its values at row[base + k]): scale, zero point and the packed codes. */
function quantizeRowBlock(row: Float32Array, base: number, n: number, j: number, s: BlockSpec, out: NBitsQuantized): void {
  const k0 = j * s.blockSize;
  const real = Math.min(s.K, k0 + s.blockSize) - k0;
  const src = base + k0;
  let mn = F32_MAX;
  let mx = -F32_MAX;
  for (let k = src; k < src + real; k++) {
    const v = row[k];
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  const { scale, zp } = blockScale(mn, mx, s);
  const bi = out.kBlocks * n + j;
  out.scales[bi] = scale;
  out.zeroPoints[bi] = zp;
  const rs = scale !== 0 ? Math.fround(1 / scale) : 0;
  const packed = out.packed;
  const at = bi * s.blob;
  const maxq = s.maxq;
  if (s.bits === 8) {
    for (let i = 0; i < real; i++) packed[at + i] = code(row[src + i], rs, zp, maxq);
    for (let i = real; i < s.blockSize; i++) packed[at + i] = zp;
    return;
  }
  // Rows past K in the last block are written as zp.
  for (let i = 0; i < s.blockSize; i += 2) {
    const lo = i < real ? code(row[src + i], rs, zp, maxq) : zp;
    const hi = i + 1 < real ? code(row[src + i + 1], rs, zp, maxq) : zp;
    packed[at + (i >> 1)] = lo | (hi << 4);
  }
}

/**
 * Min and max of rows k0..k0+real−1 of every column (NaN ignored, as `v < mn` skips it). Kept in
 * float64 locals: a Float32Array read-compare-write per element costs twice the loop.
 */
function blockMinMax(b: Float32Array, N: number, k0: number, real: number, mn: Float32Array, mx: Float32Array): void {
  for (let n = 0; n < N; n += 4) {
    const m = Math.min(4, N - n);
    let a0 = F32_MAX, a1 = F32_MAX, a2 = F32_MAX, a3 = F32_MAX;
    let z0 = -F32_MAX, z1 = -F32_MAX, z2 = -F32_MAX, z3 = -F32_MAX;
    for (let k = k0, row = k0 * N + n; k < k0 + real; k++, row += N) {
      const v0 = b[row];
      if (v0 < a0) a0 = v0;
      if (v0 > z0) z0 = v0;
      if (m > 1) {
        const v1 = b[row + 1];
        if (v1 < a1) a1 = v1;
        if (v1 > z1) z1 = v1;
      }
      if (m > 2) {
        const v2 = b[row + 2];
        if (v2 < a2) a2 = v2;
        if (v2 > z2) z2 = v2;
      }
      if (m > 3) {
        const v3 = b[row + 3];
        if (v3 < a3) a3 = v3;
        if (v3 > z3) z3 = v3;
      }
    }
    mn[n] = a0;
    mx[n] = z0;
    if (m > 1) (mn[n + 1] = a1), (mx[n + 1] = z1);
    if (m > 2) (mn[n + 2] = a2), (mx[n + 2] = z2);
    if (m > 3) (mn[n + 3] = a3), (mx[n + 3] = z3);
  }
}

/** Every column's block j of B [K, N] at once: min/max over its rows, then codes row by row (rows past K as zp). */
function quantizeColumns(b: Float32Array, N: number, s: BlockSpec, out: NBitsQuantized): void {
  const mn = new Float32Array(N);
  const mx = new Float32Array(N);
  const rs = new Float32Array(N);
  const zps = new Uint8Array(N);
  const { packed, kBlocks } = out;
  const stride = kBlocks * s.blob;
  const stage = new Uint8Array(COLUMN_GROUP * s.blob);
  for (let j = 0; j < kBlocks; j++) {
    const k0 = j * s.blockSize;
    const real = Math.min(s.K, k0 + s.blockSize) - k0;
    blockMinMax(b, N, k0, real, mn, mx);
    for (let n = 0; n < N; n++) {
      const { scale, zp } = blockScale(mn[n], mx[n], s);
      out.scales[n * kBlocks + j] = scale;
      out.zeroPoints[n * kBlocks + j] = zp;
      rs[n] = scale !== 0 ? Math.fround(1 / scale) : 0;
      zps[n] = zp;
    }
    const at = j * s.blob;
    for (let n0 = 0; n0 < N; n0 += COLUMN_GROUP) {
      const n1 = Math.min(N, n0 + COLUMN_GROUP);
      if (s.bits === 8) stageCodes8(b, N, n0, n1, k0, real, s, rs, zps, stage);
      else stageCodes4(b, N, n0, n1, k0, real, s, rs, zps, stage);
      copyStaged(stage, n0, n1, s.blob, packed, at, stride);
    }
  }
}

/**
 * Columns are coded COLUMN_GROUP at a time into a staging block [column][blob] and then copied
 * to B's layout a column's blob at a time: written straight, each row's bytes land `stride`
 * apart (a power of two for usual K), all in the same few L1 sets, and evict each other.
 */
const COLUMN_GROUP = 64;

/** 8-bit codes of block rows k0.. (real of them, then zp) for columns n0..n1 into stage[(n − n0)·blob + i]. */
function stageCodes8(b: Float32Array, N: number, n0: number, n1: number, k0: number, real: number, s: BlockSpec, rs: Float32Array, zps: Uint8Array, stage: Uint8Array): void {
  const { maxq, blob } = s;
  for (let i = 0; i < real; i++) {
    const row = (k0 + i) * N;
    for (let n = n0, p = i; n < n1; n++, p += blob) stage[p] = code(b[row + n], rs[n], zps[n], maxq);
  }
  for (let i = real; i < s.blockSize; i++) for (let n = n0, p = i; n < n1; n++, p += blob) stage[p] = zps[n];
}

/** 4-bit codes, two block rows per byte (low nibble the even row); rows past K are zp. */
function stageCodes4(b: Float32Array, N: number, n0: number, n1: number, k0: number, real: number, s: BlockSpec, rs: Float32Array, zps: Uint8Array, stage: Uint8Array): void {
  const { maxq, blob } = s;
  let i = 0;
  for (; i + 1 < real; i += 2) {
    const ra = (k0 + i) * N;
    const rb = ra + N;
    for (let n = n0, p = i >> 1; n < n1; n++, p += blob) stage[p] = code(b[ra + n], rs[n], zps[n], maxq) | (code(b[rb + n], rs[n], zps[n], maxq) << 4);
  }
  if (i < real) {
    const ra = (k0 + i) * N;
    for (let n = n0, p = i >> 1; n < n1; n++, p += blob) stage[p] = code(b[ra + n], rs[n], zps[n], maxq) | (zps[n] << 4);
    i += 2;
  }
  for (; i < s.blockSize; i += 2) for (let n = n0, p = i >> 1; n < n1; n++, p += blob) stage[p] = zps[n] | (zps[n] << 4);
}

/** Column n's staged blob to packed[at + n·stride ..] (blob, at and stride are multiples of 4: copied as words). */
function copyStaged(stage: Uint8Array, n0: number, n1: number, blob: number, packed: Uint8Array, at: number, stride: number): void {
  const from = new Uint32Array(stage.buffer, stage.byteOffset, stage.length >> 2);
  const to = new Uint32Array(packed.buffer, packed.byteOffset, packed.length >> 2);
  const words = blob >> 2;
  for (let n = n0; n < n1; n++) {
    const src = (n - n0) * words;
    const dst = (at + n * stride) >> 2;
    for (let w = 0; w < words; w++) to[dst + w] = from[src + w];
  }
}

/** Zero points packed like B: [N, ceil(kBlocks · bits / 8)], low nibble first. */
function packZeroPoints(zeroPoints: Uint8Array, N: number, kBlocks: number, bits: number): Uint8Array {
  const perRow = Math.ceil((kBlocks * bits) / 8);
  const pz = new Uint8Array(N * perRow);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < kBlocks; j++) {
      const z = zeroPoints[n * kBlocks + j];
      if (bits === 8) pz[n * perRow + j] = z;
      else pz[n * perRow + (j >> 1)] |= j & 1 ? z << 4 : z;
    }
  return pz;
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
      const tensorsOf = (r: NBitsQuantized) => (symmetric ? { [q]: r.packed, [s]: r.scales } : { [q]: r.packed, [s]: r.scales, [z]: r.packedZeroPoints! });
      return {
        tensors,
        produceFrom(w) {
          return tensorsOf(quantizeNBitsWeight(w, bits, blockSize, symmetric));
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
