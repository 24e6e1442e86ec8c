/**
 * One key's finish as plain numbers: every pair's r binned (correlation-pairs.ts), the top pairs,
 * the undefined pairs, and the redundancy clusters of the threshold components
 * (correlation-clusters.ts). A pure function of the co-moments and the settings, so the worker of
 * correlation-finish-parallel.ts, which runs this same source, gives the same numbers to the bit.
 *
 * Everything here references only itself, correlation-pairs.ts and correlation-clusters.ts:
 * finishSource() hands it to the worker as source text.
 */
import { ThresholdComponents, averageLinkageLabels, clustersSource, type NearestLater } from './correlation-clusters.ts';
import { TopPairs, binPairs, clampedR, pairsSource, type CorrelatedPair } from './correlation-pairs.ts';

/** Above this many (non-constant) neurons clustering is skipped unless forced: O(d²) time and memory. */
export const CLUSTER_AUTO_LIMIT = 4096;

/** What a key's finish reads of its accumulator (CoMoments, or the worker's view of one). */
export interface KeyMoments {
  width: number;
  n: number;
  /** The packed upper triangle of C = Σ (x−mean)(x−mean)ᵀ, row by row. */
  upper: Float64Array;
  min: ArrayLike<number>;
  max: ArrayLike<number>;
}

export interface FinishSettings {
  topK: number;
  /** Merge clusters while the average 1 − |r| distance is ≤ this. */
  threshold: number;
  /** 'auto' clusters only up to CLUSTER_AUTO_LIMIT neurons. */
  cluster: boolean | 'auto';
}

export interface KeyNumbers {
  hist: Float64Array;
  undefinedPairs: number;
  constantNeurons: number;
  top: CorrelatedPair[];
  /** null when clustering was skipped. */
  clusters: number | null;
  independent: number | null;
}

/** Index of (i, j), i ≤ j, in a row-by-row packed upper triangle of a d×d matrix. */
export function packedIndex(d: number, i: number, j: number): number {
  return i * d - (i * (i - 1)) / 2 + (j - i);
}

/** A neuron with one value on every token has no correlation with anything. */
export function isConstantNeuron(m: KeyMoments, c: number): boolean {
  return !(m.max[c] > m.min[c]) || !(m.upper[packedIndex(m.width, c, c)] > 0);
}

/**
 * One buffer for the distance matrices of a finish's components, grown to the largest: a fresh
 * 126 MB Float64Array (m = 3,973) costs 90–150 ms of page faults before the first value is
 * written, more than filling it does. Every entry of a matrix is written before it is read.
 */
export class DistanceScratch {
  private buf = new Float64Array(0);
  matrix(c: number): Float64Array {
    if (this.buf.length < c * c) this.buf = new Float64Array(c * c);
    return this.buf.subarray(0, c * c);
  }
}

/**
 * 1 − |r| between the neurons of one component, as a full symmetric matrix: the upper triangle
 * row by row (in the packed triangle's own order), then mirrored tile by tile, so no loop walks a
 * column of a matrix that can be m×m at m = 4096. Each row's nearest later item (smallest
 * distance, first on ties) is found while the row is written, which is the linkage's first scan.
 */
function componentDistances(m: KeyMoments, sd: Float64Array, g: Int32Array, scratch: DistanceScratch): { dist: Float64Array; first: NearestLater } {
  const c = g.length, d = m.width, upper = m.upper;
  const dist = scratch.matrix(c);
  const near = new Int32Array(c).fill(-1), nearDist = new Float64Array(c).fill(Infinity);
  const sdg = Float64Array.from(g, (i) => sd[i]);
  for (let p = 0; p < c; p++) {
    const i = g[p], sdi = sdg[p], base = packedIndex(d, i, i) - i, row = p * c;
    let best = Infinity, at = -1;
    dist[row + p] = 0;
    for (let q = p + 1; q < c; q++) {
      const v = 1 - Math.abs(clampedR(upper[base + g[q]], sdi, sdg[q]));
      dist[row + q] = v;
      if (v < best) (best = v), (at = q);
    }
    near[p] = at;
    nearDist[p] = best;
  }
  const T = 32;
  for (let p0 = 0; p0 < c; p0 += T)
    for (let q0 = p0; q0 < c; q0 += T)
      for (let p = p0; p < Math.min(p0 + T, c); p++) for (let q = Math.max(q0, p + 1); q < Math.min(q0 + T, c); q++) dist[q * c + p] = dist[p * c + q];
  return { dist, first: { near, nearDist } };
}

/**
 * Cluster and singleton counts over `defined` non-constant neurons: each component of the cut
 * (two or more neurons) is clustered on its own 1 − |r| matrix; every other neuron is a cluster
 * of its own.
 */
function clusterCounts(m: KeyMoments, sd: Float64Array, groups: Int32Array[], defined: number, threshold: number, scratch: DistanceScratch): { clusters: number; independent: number } {
  let clusters = defined, independent = defined;
  for (const g of groups) {
    const c = g.length;
    const { dist, first } = componentDistances(m, sd, g, scratch);
    const sizes = new Map<number, number>();
    for (const l of averageLinkageLabels(dist, c, threshold, first)) sizes.set(l, (sizes.get(l) ?? 0) + 1);
    let single = 0;
    for (const s of sizes.values()) if (s === 1) single++;
    clusters += sizes.size - c;
    independent += single - c;
  }
  return { clusters, independent };
}

/** Pearson r of every pair i<j of one accumulator, binned, ranked and clustered. */
export function keyNumbers(m: KeyMoments, s: FinishSettings, scratch: DistanceScratch): KeyNumbers {
  const d = m.width;
  const constant = new Uint8Array(d);
  const sd = new Float64Array(d);
  let md = 0;
  for (let i = 0; i < d; i++) {
    constant[i] = isConstantNeuron(m, i) ? 1 : 0;
    sd[i] = Math.sqrt(m.upper[packedIndex(d, i, i)]);
    if (!constant[i]) md++;
  }
  const doCluster = s.cluster === true || (s.cluster === 'auto' && md <= CLUSTER_AUTO_LIMIT);
  const components = doCluster ? new ThresholdComponents(d) : null;
  const top = new TopPairs(s.topK);
  const { hist, undefinedPairs } = binPairs({ width: d, upper: m.upper, constant, sd }, top, components ? { components, threshold: s.threshold } : null);
  const counted = components ? clusterCounts(m, sd, components.groups(), md, s.threshold, scratch) : null;
  return { hist, undefinedPairs, constantNeurons: d - md, top: top.sorted(), clusters: counted?.clusters ?? null, independent: counted?.independent ?? null };
}

/** This file's functions as source, after those of correlation-pairs.ts and correlation-clusters.ts, for the finish worker. */
export function finishSource(): string {
  return [pairsSource(), clustersSource(), `const CLUSTER_AUTO_LIMIT = ${CLUSTER_AUTO_LIMIT};`, ...[packedIndex, isConstantNeuron, DistanceScratch, componentDistances, clusterCounts, keyNumbers].map(String)].join('\n');
}
