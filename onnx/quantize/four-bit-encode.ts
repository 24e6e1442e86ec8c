/**
 * The bulk kernel of bnb 4-bit quantization (nf4.ts holds the format): per block of consecutive
 * flat elements, absmax, then every element's code, packed two per byte, high nibble first.
 *
 * A code is "how many decision thresholds lie below x" (the midpoints between neighbouring levels;
 * nf4.ts derives them so that the count equals the nearest-level search, ties included). Instead of
 * four data-dependent branches per element (mispredicted half the time on real weights), a table of
 * 128 equal cells over x's range gives the count below the cell, and at most two comparisons finish
 * it: the thresholds are ≥ 0.08 apart, so a cell (width 1/64) holds at most one. The count is
 * exact, not approximate: the cell only says where to start comparing (see thresholdLookup).
 */

export interface ThresholdLookup {
  /** Sorted thresholds, then two +Infinity sentinels (so t[c] exists for c ≤ count + 1). */
  t: Float64Array;
  /** Thresholds surely below the cell: cellCount[cell] ≤ the true count ≤ cellCount[cell] + 2. */
  cellCount: Uint8Array;
  lo: number;
  /** Cells per unit of x. */
  scale: number;
}

const CELLS = 128;

/** A lookup over x ∈ [lo, hi] for `thresholds` (ascending); x > t counts threshold t. */
export function thresholdLookup(thresholds: readonly number[], lo: number, hi: number): ThresholdLookup {
  for (let i = 1; i < thresholds.length; i++) if (!(thresholds[i] > thresholds[i - 1])) throw new RangeError('thresholds must ascend');
  const scale = CELLS / (hi - lo);
  const t = Float64Array.from([...thresholds, Infinity, Infinity]);
  const cellCount = new Uint8Array(CELLS + 1);
  // Margins far above the rounding of (x − lo) · scale (~1e-16 relative), far below cell widths.
  const eps = 1e-9;
  for (let c = 0; c <= CELLS; c++) {
    const from = lo + c / scale - eps;
    const to = lo + (c + 1) / scale + eps;
    cellCount[c] = thresholds.filter((v) => v < from).length;
    const inside = thresholds.filter((v) => v >= from && v <= to).length;
    if (inside > 2) throw new RangeError(`thresholds too dense for ${CELLS} cells`);
  }
  return { t, cellCount, lo, scale };
}

/** The count of thresholds below x (x in [lo, hi], or NaN → 0): the same number the kernel computes. */
export function countBelow(l: ThresholdLookup, x: number): number {
  let c = l.cellCount[((x - l.lo) * l.scale) | 0];
  c += +(x > l.t[c]);
  c += +(x > l.t[c]);
  return c;
}

export interface FourBitCoding {
  lookup: ThresholdLookup;
  /** Code of each count (nf4: the count itself; fp4: the magnitude's table index). */
  codeOf: Uint8Array;
  /** fp4: count on |x| and set bit 3 for x < 0 (so a small negative rounds to −0). */
  signBit: boolean;
  /** Code of every element of an all-zero block. */
  zeroCode: number;
}

/**
 * Quantize `src` (flat elements flat0.. of W; flat0 a multiple of blockSize) into `packed` and
 * `absmax` (indexed by the flat position of the whole tensor). Only the tensor's last block may be
 * short; an odd last element leaves its low nibble for the caller's padding.
 */
export function encode4bit(src: Float32Array, flat0: number, blockSize: number, coding: FourBitCoding, packed: Uint8Array, absmax: Float32Array): void {
  const n = src.length;
  for (let s = 0; s < n; s += blockSize) {
    const e = Math.min(n, s + blockSize);
    let m = 0;
    for (let i = s; i < e; i++) m = Math.max(m, Math.abs(src[i]));
    absmax[(flat0 + s) / blockSize] = m;
    if (m === 0) {
      const z = coding.zeroCode;
      for (let i = s; i < e; i += 2) packed[(flat0 + i) >>> 1] = i + 1 < e ? (z << 4) | z : z << 4;
    } else if (coding.signBit) encodeSigned(src, s, e, flat0, Math.fround(1 / m), coding, packed);
    else encodePlain(src, s, e, flat0, Math.fround(1 / m), coding, packed);
  }
}

/** nf4: the count of thresholds below clamp(w · inv, −1, 1) in float32. */
function encodePlain(src: Float32Array, s: number, e: number, flat0: number, inv: number, coding: FourBitCoding, packed: Uint8Array): void {
  const { t, cellCount, lo, scale } = coding.lookup;
  const codeOf = coding.codeOf;
  for (let i = s; i < e; i += 2) {
    let x = Math.fround(src[i] * inv);
    x = x > 1 ? 1 : x < -1 ? -1 : x;
    let c = cellCount[((x - lo) * scale) | 0];
    c += +(x > t[c]);
    c += +(x > t[c]);
    let byte = codeOf[c] << 4;
    if (i + 1 < e) {
      let y = Math.fround(src[i + 1] * inv);
      y = y > 1 ? 1 : y < -1 ? -1 : y;
      let d = cellCount[((y - lo) * scale) | 0];
      d += +(y > t[d]);
      d += +(y > t[d]);
      byte |= codeOf[d];
    }
    packed[(flat0 + i) >>> 1] = byte;
  }
}

/** fp4: the magnitude's code from |x|, the sign in bit 3. */
function encodeSigned(src: Float32Array, s: number, e: number, flat0: number, inv: number, coding: FourBitCoding, packed: Uint8Array): void {
  const { t, cellCount, lo, scale } = coding.lookup;
  const codeOf = coding.codeOf;
  for (let i = s; i < e; i += 2) {
    let x = Math.fround(src[i] * inv);
    x = x > 1 ? 1 : x < -1 ? -1 : x;
    const a = Math.abs(x);
    let c = cellCount[((a - lo) * scale) | 0];
    c += +(a > t[c]);
    c += +(a > t[c]);
    let byte = (x < 0 ? codeOf[c] | 8 : codeOf[c]) << 4;
    if (i + 1 < e) {
      let y = Math.fround(src[i + 1] * inv);
      y = y > 1 ? 1 : y < -1 ? -1 : y;
      const b = Math.abs(y);
      let d = cellCount[((b - lo) * scale) | 0];
      d += +(b > t[d]);
      d += +(b > t[d]);
      byte |= y < 0 ? codeOf[d] | 8 : codeOf[d];
    }
    packed[(flat0 + i) >>> 1] = byte;
  }
}

/**
 * The same codes from B [K, N] itself (MatMul's layout) when K is a multiple of blockSize, so a
 * block (blockSize consecutive k of one column n, flat index n·K + k) never spans columns: rows of
 * B are swept contiguously, a block's absmax per column first, then two rows at a time give the
 * high and low nibble of one byte per column. No transposed copy, one read of the weight.
 */
export function encode4bitColumns(b: Float32Array, K: number, N: number, blockSize: number, coding: FourBitCoding, packed: Uint8Array, absmax: Float32Array): void {
  if (K % blockSize !== 0) throw new RangeError(`encode4bitColumns needs K (${K}) divisible by the block size (${blockSize})`);
  const colMax = new Float32Array(N);
  const inv = new Float32Array(N);
  for (let k0 = 0; k0 < K; k0 += blockSize) {
    colMax.fill(0);
    for (let k = k0; k < k0 + blockSize; k++) {
      const row = k * N;
      for (let n = 0; n < N; n++) colMax[n] = Math.max(colMax[n], Math.abs(b[row + n]));
    }
    for (let n = 0; n < N; n++) {
      absmax[(n * K + k0) / blockSize] = colMax[n];
      inv[n] = Math.fround(1 / colMax[n]);
    }
    for (let k = k0; k < k0 + blockSize; k += 2) encodeRowPair(b, k * N, (k + 1) * N, N, inv, coding, packed, k, K);
    // An all-zero block (absmax 0, inv ∞) gets the zero code, as encode4bit gives it.
    const z = (coding.zeroCode << 4) | coding.zeroCode;
    for (let n = 0; n < N; n++) if (colMax[n] === 0) packed.fill(z, (n * K + k0) >>> 1, (n * K + k0 + blockSize) >>> 1);
  }
}

/** Rows k and k + 1 of B: for each column n, the byte at flat n·K + k (high nibble row k). */
function encodeRowPair(b: Float32Array, rowA: number, rowB: number, N: number, inv: Float32Array, coding: FourBitCoding, packed: Uint8Array, k: number, K: number): void {
  const { t, cellCount, lo, scale } = coding.lookup;
  const codeOf = coding.codeOf;
  const half = K >>> 1;
  let at = k >>> 1;
  if (coding.signBit) {
    for (let n = 0; n < N; n++, at += half) {
      let x = Math.fround(b[rowA + n] * inv[n]);
      x = x > 1 ? 1 : x < -1 ? -1 : x;
      const a = Math.abs(x);
      let c = cellCount[((a - lo) * scale) | 0];
      c += +(a > t[c]);
      c += +(a > t[c]);
      let y = Math.fround(b[rowB + n] * inv[n]);
      y = y > 1 ? 1 : y < -1 ? -1 : y;
      const e = Math.abs(y);
      let d = cellCount[((e - lo) * scale) | 0];
      d += +(e > t[d]);
      d += +(e > t[d]);
      packed[at] = ((x < 0 ? codeOf[c] | 8 : codeOf[c]) << 4) | (y < 0 ? codeOf[d] | 8 : codeOf[d]);
    }
    return;
  }
  for (let n = 0; n < N; n++, at += half) {
    let x = Math.fround(b[rowA + n] * inv[n]);
    x = x > 1 ? 1 : x < -1 ? -1 : x;
    let c = cellCount[((x - lo) * scale) | 0];
    c += +(x > t[c]);
    c += +(x > t[c]);
    let y = Math.fround(b[rowB + n] * inv[n]);
    y = y > 1 ? 1 : y < -1 ? -1 : y;
    let d = cellCount[((y - lo) * scale) | 0];
    d += +(y > t[d]);
    d += +(y > t[d]);
    packed[at] = (codeOf[c] << 4) | codeOf[d];
  }
}
