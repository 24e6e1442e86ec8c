/**
 * Per-column running moments of a row-major [rows, width] float32 matrix, accumulated in float64.
 *
 * Every row carries every column, so one row count serves all columns. Each update computes the
 * batch mean and M2 in one pass (deviations from a shift near the mean) and Chan-merges the batch
 * into the running state: faster than per-element Welford and as stable. merge() uses the same formula, so
 * any split of the data into shards gives the same result up to float64 rounding.
 */
import { QuantlensError } from '../../core/errors.ts';
import { decodeF64, encodeF64 } from './state-codec.ts';

export interface NearZeroBounds {
  /** A value counts as near zero when lo < x < hi (both exclusive). Default (-0.1, 0.1), the paper's. */
  lo: number;
  hi: number;
}

export const DEFAULT_NEAR_ZERO: NearZeroBounds = { lo: -0.1, hi: 0.1 };

export interface ColumnMomentsState {
  width: number;
  count: number;
  nearZeroLo: number;
  nearZeroHi: number;
  /** base64 float64 arrays of length width (see state-codec.ts). */
  mean: string;
  m2: string;
  min: string;
  max: string;
  nearZero: string;
}

export class ColumnMoments {
  readonly width: number;
  readonly bounds: NearZeroBounds;
  /** Rows seen (the per-column count: every row has every column). */
  count = 0;
  readonly mean: Float64Array;
  /** Sum of squared deviations from the mean; population variance = m2 / count. */
  readonly m2: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Count of values strictly inside (lo, hi); float64 holds integers exactly up to 2^53. */
  readonly nearZero: Float64Array;

  // Scratch for the batch pass, reused across updates so update() does not allocate.
  private readonly bMean: Float64Array;
  private readonly bM2: Float64Array;
  private readonly bShift: Float64Array;

  constructor(width: number, bounds: NearZeroBounds = DEFAULT_NEAR_ZERO) {
    if (!Number.isInteger(width) || width <= 0) throw new QuantlensError('STATE', `ColumnMoments: width must be a positive integer, got ${width}`);
    if (!(bounds.lo < bounds.hi)) throw new QuantlensError('CONFIG', `near-zero bounds need lo < hi, got (${bounds.lo}, ${bounds.hi})`);
    this.width = width;
    this.bounds = { lo: bounds.lo, hi: bounds.hi };
    this.mean = new Float64Array(width);
    this.m2 = new Float64Array(width);
    this.min = new Float64Array(width).fill(Infinity);
    this.max = new Float64Array(width).fill(-Infinity);
    this.nearZero = new Float64Array(width);
    this.bMean = new Float64Array(width);
    this.bM2 = new Float64Array(width);
    this.bShift = new Float64Array(width);
  }

  /** Adds `rows` rows of row-major values (length must be rows * width). */
  update(values: Float32Array | Float64Array, rows = values.length / this.width): void {
    const w = this.width;
    if (!Number.isInteger(rows) || values.length !== rows * w) {
      throw new QuantlensError('STATE', `ColumnMoments: got ${values.length} values, not rows*width with width ${w}`);
    }
    if (rows === 0) return;
    const { bMean: s1, bM2: s2, min, max, nearZero } = this;
    const shift = this.shiftFor(values);
    s1.fill(0);
    s2.fill(0);
    const { lo, hi } = this.bounds;
    for (let r = 0, off = 0; r < rows; r++, off += w) {
      for (let c = 0; c < w; c++) {
        const x = values[off + c];
        const d = x - shift[c];
        s1[c] += d;
        s2[c] += d * d;
        if (x < min[c]) min[c] = x;
        if (x > max[c]) max[c] = x;
        if (x > lo && x < hi) nearZero[c]++;
      }
    }
    this.mergeShiftedSums(rows, shift, s1, s2);
  }

  /**
   * The shift for a batch's one-pass sums: a value close to each column's mean (the running
   * mean, or the batch's first row at the start), so M2 = Σd² − (Σd)²/n does not cancel badly.
   */
  shiftFor(values: Float32Array | Float64Array): Float64Array {
    const shift = this.bShift;
    if (this.count > 0) shift.set(this.mean);
    else for (let c = 0; c < this.width; c++) shift[c] = values[c];
    return shift;
  }

  /**
   * Merge a batch given as sums of deviations from `shift` (Σd, Σd²) plus its column min, max and
   * near-zero counts — the form both the JS loop and the ONNX Runtime graph (moments-graph.ts) produce.
   */
  mergeShiftedSums(rows: number, shift: Float64Array, s1: ArrayLike<number>, s2: ArrayLike<number>, extremes?: { min: ArrayLike<number>; max: ArrayLike<number>; nearZero: ArrayLike<number> }): void {
    const { bMean, bM2, min, max, nearZero } = this;
    for (let c = 0; c < this.width; c++) {
      const a = s1[c];
      const b = s2[c];
      bMean[c] = shift[c] + a / rows;
      bM2[c] = Math.max(0, b - (a * a) / rows);
      if (extremes) {
        if (extremes.min[c] < min[c]) min[c] = extremes.min[c];
        if (extremes.max[c] > max[c]) max[c] = extremes.max[c];
        nearZero[c] += extremes.nearZero[c];
      }
    }
    this.chanMerge(rows, bMean, bM2);
  }

  /** Chan et al. parallel update: combine (count, mean, m2) of another part into this one. */
  private chanMerge(nb: number, meanB: Float64Array, m2B: Float64Array): void {
    const na = this.count;
    const n = na + nb;
    const { mean, m2 } = this;
    if (na === 0) {
      mean.set(meanB);
      m2.set(m2B);
    } else {
      const f = (na * nb) / n;
      const g = nb / n;
      for (let c = 0; c < this.width; c++) {
        const delta = meanB[c] - mean[c];
        mean[c] += delta * g;
        m2[c] += m2B[c] + delta * delta * f;
      }
    }
    this.count = n;
  }

  merge(other: ColumnMomentsState | ColumnMoments): void {
    const o = other instanceof ColumnMoments ? other : ColumnMoments.fromState(other);
    if (o.width !== this.width) throw new QuantlensError('STATE', `ColumnMoments: cannot merge width ${o.width} into width ${this.width}`);
    if (o.bounds.lo !== this.bounds.lo || o.bounds.hi !== this.bounds.hi) {
      throw new QuantlensError('STATE', `ColumnMoments: near-zero bounds differ (${o.bounds.lo},${o.bounds.hi}) vs (${this.bounds.lo},${this.bounds.hi})`);
    }
    if (o.count === 0) return;
    for (let c = 0; c < this.width; c++) {
      if (o.min[c] < this.min[c]) this.min[c] = o.min[c];
      if (o.max[c] > this.max[c]) this.max[c] = o.max[c];
      this.nearZero[c] += o.nearZero[c];
    }
    this.chanMerge(o.count, o.mean, o.m2);
  }

  state(): ColumnMomentsState {
    return {
      width: this.width,
      count: this.count,
      nearZeroLo: this.bounds.lo,
      nearZeroHi: this.bounds.hi,
      mean: encodeF64(this.mean),
      m2: encodeF64(this.m2),
      min: encodeF64(this.min),
      max: encodeF64(this.max),
      nearZero: encodeF64(this.nearZero),
    };
  }

  static fromState(s: ColumnMomentsState): ColumnMoments {
    const m = new ColumnMoments(s.width, { lo: s.nearZeroLo, hi: s.nearZeroHi });
    m.count = s.count;
    m.mean.set(decodeF64(s.mean, s.width, 'mean'));
    m.m2.set(decodeF64(s.m2, s.width, 'm2'));
    m.min.set(decodeF64(s.min, s.width, 'min'));
    m.max.set(decodeF64(s.max, s.width, 'max'));
    m.nearZero.set(decodeF64(s.nearZero, s.width, 'nearZero'));
    return m;
  }

  /** Population variance per column (NaN when no rows were seen). */
  variance(): Float64Array {
    const out = new Float64Array(this.width);
    for (let c = 0; c < this.width; c++) out[c] = this.count > 0 ? this.m2[c] / this.count : NaN;
    return out;
  }

  nearZeroFraction(): Float64Array {
    const out = new Float64Array(this.width);
    for (let c = 0; c < this.width; c++) out[c] = this.count > 0 ? this.nearZero[c] / this.count : NaN;
    return out;
  }
}
