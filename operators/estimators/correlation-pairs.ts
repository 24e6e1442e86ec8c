/**
 * The pass over every pair i < j of one co-moment accumulator in correlation's finish: the |r|
 * histogram, the pairs left undefined by constant neurons, the top-k pairs and (when clustering)
 * the union of pairs within the cut. d²/2 pairs (179M at d_ff 18,944), so the inner loop does only
 * what every pair needs — r, its bin, one compare — four pairs per iteration, and everything else
 * (constants, top-k, unions) happens in a rare branch taken only by pairs that could matter there.
 *
 * Exactly the numbers of the plain loop (one pair at a time, correlationBin): r is the same
 * expression upper[k] / (sd_i · sd_j), clamped; the bin is floor(10·|r|) corrected by the same
 * edges k/10; the rare branch applies the exact tests to each pair it sees, and neither the top-k
 * (a total order) nor the components depend on the order pairs are offered in. An accumulator
 * where some r could be NaN (a neuron whose co-moments overflowed) takes the one-pair loop.
 */
import { ThresholdComponents } from './correlation-clusters.ts';

export const HISTOGRAM_BINS = 10;

/** Histogram bin of |r| in [0, 1]: k with k/10 ≤ |r| < (k+1)/10, and |r| = 1 in the last bin. */
export function correlationBin(absR: number, bins = HISTOGRAM_BINS): number {
  let k = Math.floor(absR * bins);
  if (k >= bins) k = bins - 1;
  if (k < 0) k = 0;
  // floor(a·10) can disagree with the edges k/10 by one ulp; the edges decide.
  if (absR < k / bins && k > 0) k--;
  else if (k < bins - 1 && absR >= (k + 1) / bins) k++;
  return k;
}

/**
 * EDGES[k] = k/10 for the bins, +∞ from index 10 on: with x = trunc(10·a) ∈ [0, 10],
 * x + (a ≥ EDGES[x+1]) − (a < EDGES[x]) is correlationBin(a), branch-free (x = 10 only at a ≈ 1).
 */
function histogramEdges(): Float64Array {
  return Float64Array.from({ length: HISTOGRAM_BINS + 2 }, (_, k) => (k < HISTOGRAM_BINS ? k / HISTOGRAM_BINS : Infinity));
}
const EDGES = histogramEdges();

/** Pearson r of a pair from its co-moment and the two √C_ii, clamped to [−1, 1] (rounding can pass ±1). */
export function clampedR(coMoment: number, sdI: number, sdJ: number): number {
  const r = coMoment / (sdI * sdJ);
  return r > 1 ? 1 : r < -1 ? -1 : r;
}

export interface CorrelatedPair {
  i: number;
  j: number;
  r: number;
}

/** Keeps the k pairs with the largest |r| (ties: smaller (i, j) first). */
export class TopPairs {
  private readonly items: CorrelatedPair[] = [];
  constructor(private readonly k: number) {}
  /** |r| below which a pair cannot enter (−1 until the heap is full; no pair enters when k = 0). */
  get floor(): number {
    if (this.k <= 0) return Infinity;
    return this.items.length < this.k ? -1 : Math.abs(this.items[0].r);
  }
  /** true when x ranks below y (would be evicted first). */
  private worse(x: CorrelatedPair, y: CorrelatedPair): boolean {
    const ax = Math.abs(x.r), ay = Math.abs(y.r);
    if (ax !== ay) return ax < ay;
    return x.i !== y.i ? x.i > y.i : x.j > y.j;
  }
  offer(i: number, j: number, r: number): void {
    if (this.k <= 0) return;
    const h = this.items;
    // Most pairs rank below the heap's worst: refuse them before allocating.
    if (h.length === this.k && Math.abs(r) < Math.abs(h[0].r)) return;
    const p = { i, j, r };
    if (h.length < this.k) {
      h.push(p);
      this.siftUp(h.length - 1);
      return;
    }
    if (!this.worse(h[0], p)) return;
    h[0] = p;
    this.siftDown(0);
  }
  private siftUp(c: number): void {
    const h = this.items;
    while (c > 0) {
      const par = (c - 1) >> 1;
      if (!this.worse(h[c], h[par])) break;
      [h[c], h[par]] = [h[par], h[c]];
      c = par;
    }
  }
  private siftDown(c: number): void {
    const h = this.items;
    for (;;) {
      const l = 2 * c + 1, r2 = l + 1;
      let w = c;
      if (l < h.length && this.worse(h[l], h[w])) w = l;
      if (r2 < h.length && this.worse(h[r2], h[w])) w = r2;
      if (w === c) break;
      [h[c], h[w]] = [h[w], h[c]];
      c = w;
    }
  }
  sorted(): CorrelatedPair[] {
    return [...this.items].sort((x, y) => (this.worse(x, y) ? 1 : this.worse(y, x) ? -1 : 0));
  }
}

export interface PairInputs {
  width: number;
  /** The packed upper triangle of the co-moments, row by row (diagonal included). */
  upper: Float64Array;
  /** 1 for a constant neuron (its pairs are undefined). */
  constant: Uint8Array;
  /** √C_ii per neuron. */
  sd: Float64Array;
}

/** The pairs within the cut (1 − |r| ≤ threshold) are unioned into `components`. */
export interface PairClustering {
  components: ThresholdComponents;
  threshold: number;
}

/**
 * Handles the pairs of one row that reach the rare branch: the exact tests for constants, the
 * top-k and the cut, pair by pair. Returns the new prefilter bound.
 */
class RareBranch {
  /** Pairs with |r| below this cannot enter the top-k or the cut (a bound a little under both). */
  lo: number;
  private readonly cutLo: number;

  constructor(private readonly p: PairInputs, private readonly top: TopPairs, private readonly cluster: PairClustering | null) {
    // 1 − a ≤ t (rounded) implies a ≥ 1 − t − 2 ulp(1); the margin only lets more pairs in to the exact test.
    this.cutLo = cluster ? 1 - cluster.threshold - 1e-9 : Infinity;
    this.lo = Math.min(top.floor, this.cutLo);
  }

  pair(i: number, j: number, k: number): void {
    const { upper, sd, constant } = this.p;
    if (constant[j]) return;
    const r = clampedR(upper[k], sd[i], sd[j]);
    const a = Math.abs(r);
    if (a >= this.top.floor) this.top.offer(i, j, r);
    if (this.cluster && 1 - a <= this.cluster.threshold) this.cluster.components.union(i, j);
    this.lo = Math.min(this.top.floor, this.cutLo);
  }
}

/** sd with +∞ for constant neurons, so their pairs give |r| = 0 in the hot loop (then taken back out of bin 0). */
function hotSd(p: PairInputs): { sdHot: Float64Array; constantAfter: Int32Array } {
  const d = p.width;
  const sdHot = new Float64Array(d);
  const constantAfter = new Int32Array(d + 1);
  for (let i = d - 1; i >= 0; i--) {
    sdHot[i] = p.constant[i] ? Infinity : p.sd[i];
    constantAfter[i] = constantAfter[i + 1] + p.constant[i];
  }
  return { sdHot, constantAfter };
}

/**
 * Whether every defined neuron's sd is finite and far from underflow, so no pair's r is NaN
 * (∞/∞ or 0/0). The one-pair loop drops a NaN pair from the histogram (its bin is NaN), the
 * unrolled one would count it in bin 0; such accumulators (an activation that overflowed) take the
 * one-pair loop, so the two never differ.
 */
function plainSd(p: PairInputs): boolean {
  for (let i = 0; i < p.width; i++) if (!p.constant[i] && !(p.sd[i] > 1e-150 && p.sd[i] < 1e150)) return false;
  return true;
}

/** The plain loop: one pair at a time, every test on every pair (the reference the unrolled pass equals). */
export function binPairsOneByOne(p: PairInputs, top: TopPairs, cluster: PairClustering | null): { hist: Float64Array; undefinedPairs: number } {
  const d = p.width;
  const hist = new Float64Array(HISTOGRAM_BINS);
  let undefinedPairs = 0;
  for (let i = 0, k = 0; i < d; i++) {
    k++;
    for (let j = i + 1; j < d; j++, k++) {
      if (p.constant[i] || p.constant[j]) {
        undefinedPairs++;
        continue;
      }
      const r = clampedR(p.upper[k], p.sd[i], p.sd[j]);
      const a = Math.abs(r);
      hist[correlationBin(a)]++;
      top.offer(i, j, r);
      if (cluster && 1 - a <= cluster.threshold) cluster.components.union(i, j);
    }
  }
  return { hist, undefinedPairs };
}

/** Bin of a = |r| ∈ [0, 1] with x = trunc(10·a): correlationBin(a), branch-free. */
const bin = (a: number, x: number) => x + +(a >= EDGES[x + 1]) - +(a < EDGES[x]);

/**
 * One pass over every pair: histogram counts (bins of |r|), undefined pairs, top pairs offered to
 * `top`, cut pairs unioned. Reads the packed triangle once, in order.
 */
export function binPairs(p: PairInputs, top: TopPairs, cluster: PairClustering | null): { hist: Float64Array; undefinedPairs: number } {
  if (!plainSd(p)) return binPairsOneByOne(p, top, cluster);
  const d = p.width, upper = p.upper;
  const { sdHot, constantAfter } = hotSd(p);
  const rare = new RareBranch(p, top, cluster);
  // Four histograms, one per pair of an iteration, so consecutive counts do not wait on each other.
  const H = HISTOGRAM_BINS + 1;
  const h = new Float64Array(4 * H);
  let undefinedPairs = 0;
  let lo = rare.lo;
  for (let i = 0, k = 0; i < d; i++) {
    k++; // the diagonal
    const rest = d - i - 1;
    if (p.constant[i]) {
      undefinedPairs += rest;
      k += rest;
      continue;
    }
    // Constant columns land in bin 0 here (|r| = 0 from sd = ∞) and are taken out after the row.
    undefinedPairs += constantAfter[i + 1];
    h[0] -= constantAfter[i + 1];
    const sdi = sdHot[i];
    let j = i + 1;
    for (; j + 3 < d; j += 4, k += 4) {
      let a = Math.abs(upper[k] / (sdi * sdHot[j]));
      let b = Math.abs(upper[k + 1] / (sdi * sdHot[j + 1]));
      let c = Math.abs(upper[k + 2] / (sdi * sdHot[j + 2]));
      let e = Math.abs(upper[k + 3] / (sdi * sdHot[j + 3]));
      a = a > 1 ? 1 : a;
      b = b > 1 ? 1 : b;
      c = c > 1 ? 1 : c;
      e = e > 1 ? 1 : e;
      const x = bin(a, (a * HISTOGRAM_BINS) | 0), y = bin(b, (b * HISTOGRAM_BINS) | 0);
      const z = bin(c, (c * HISTOGRAM_BINS) | 0), w = bin(e, (e * HISTOGRAM_BINS) | 0);
      h[x]++;
      h[H + y]++;
      h[2 * H + z]++;
      h[3 * H + w]++;
      if (a >= lo || b >= lo || c >= lo || e >= lo) {
        for (let t = 0; t < 4; t++) rare.pair(i, j + t, k + t);
        lo = rare.lo;
      }
    }
    for (; j < d; j++, k++) {
      let a = Math.abs(upper[k] / (sdi * sdHot[j]));
      a = a > 1 ? 1 : a;
      h[bin(a, (a * HISTOGRAM_BINS) | 0)]++;
      if (a >= lo) rare.pair(i, j, k), (lo = rare.lo);
    }
  }
  const hist = new Float64Array(HISTOGRAM_BINS);
  for (let b = 0; b < HISTOGRAM_BINS; b++) hist[b] = h[b] + h[H + b] + h[2 * H + b] + h[3 * H + b];
  return { hist, undefinedPairs };
}

/**
 * This file's functions and constants as JavaScript source, for the finish worker
 * (correlation-finish-parallel.ts): it runs this same code, so its numbers are this thread's.
 */
export function pairsSource(): string {
  return [
    `const HISTOGRAM_BINS = ${HISTOGRAM_BINS};`,
    String(histogramEdges),
    'const EDGES = histogramEdges();',
    `const bin = ${String(bin)};`,
    ...[correlationBin, clampedR, TopPairs, RareBranch, hotSd, plainSd, binPairsOneByOne, binPairs].map(String),
  ].join('\n');
}
