/**
 * Redundancy clusters of correlation's finish: UPGMA (average linkage) on 1 − |r|, cut so that
 * merges at distance ≤ threshold are kept (scipy fcluster criterion='distance').
 *
 * Two clusters whose every cross pair is farther than the threshold have an average farther than
 * it too, so no kept merge crosses a connected component of the graph "distance ≤ threshold".
 * finish() therefore only unions those pairs while it bins them (ThresholdComponents) and runs
 * the linkage on each component's own small matrix: no m×m matrix of every defined neuron.
 */

/** Union–find over item indices; the root of a set is its smallest item. */
export class ThresholdComponents {
  private readonly parent: Int32Array;

  constructor(readonly size: number) {
    this.parent = Int32Array.from({ length: size }, (_, i) => i);
  }

  find(x: number): number {
    const p = this.parent;
    while (p[x] !== x) {
      p[x] = p[p[x]];
      x = p[x];
    }
    return x;
  }

  union(a: number, b: number): void {
    const ra = this.find(a), rb = this.find(b);
    if (ra < rb) this.parent[rb] = ra;
    else if (rb < ra) this.parent[ra] = rb;
  }

  /** Sets of two or more items, each in increasing item order (singletons are left out). */
  groups(): Int32Array[] {
    const n = this.size;
    const count = new Int32Array(n);
    for (let i = 0; i < n; i++) count[this.find(i)]++;
    const out = new Map<number, { items: Int32Array; fill: number }>();
    for (let i = 0; i < n; i++) {
      const r = this.find(i);
      if (count[r] < 2) continue;
      let g = out.get(r);
      if (!g) out.set(r, (g = { items: new Int32Array(count[r]), fill: 0 }));
      g.items[g.fill++] = i;
    }
    return [...out.values()].map((g) => g.items);
  }
}

/**
 * Flat clusters of average-linkage agglomerative clustering on a symmetric m×m distance matrix
 * (both halves read; overwritten), cut at `threshold`. Greedy in the textbook order: each step
 * merges the closest pair of clusters, ties to the smallest (i, j) with clusters named by their
 * smallest item, which is exactly what a naive O(m³) UPGMA does. A cluster distance is the sum of
 * its item distances ÷ (nᵢ·nⱼ), as a naive UPGMA computes it (not a chain of rounded
 * Lance–Williams averages); merging stops at the first step above the threshold. Returns a
 * cluster label (its smallest item) per item.
 */
export function averageLinkageLabels(dist: Float64Array, m: number, threshold: number, first?: NearestLater): Int32Array {
  const link = new Linkage(dist, m, first);
  for (;;) {
    const a = link.closest();
    if (a < 0 || !(link.nearDist[a] <= threshold)) break;
    link.merge(a, link.near[a]);
  }
  return link.labels();
}

/**
 * Each item's nearest later item j > i in a distance matrix (smallest distance, the first j on
 * ties; −1 and +∞ for the last item): the linkage's first scan, which a caller that writes the
 * matrix row by row can find as it goes (correlation's componentDistances).
 */
export interface NearestLater {
  near: Int32Array;
  nearDist: Float64Array;
}

/**
 * One greedy average-linkage run. Row A of the matrix holds, per item j, the sum of A's items'
 * distances to j, so a merge adds two rows (contiguous) and a cluster's distances to every other
 * cluster come from one pass over its row, bucketed by the items' clusters. No step walks a
 * column: at m = 4096 each column step is a cache and TLB miss, which made the Lance–Williams
 * column updates of the earlier nearest-neighbour chain most of correlation's finish.
 */
class Linkage {
  private readonly size: Float64Array;
  /** The cluster (its smallest item) each item is in, and each cluster's items as a linked list. */
  private readonly rep: Int32Array;
  private readonly next: Int32Array;
  private readonly tail: Int32Array;
  /** Active clusters in increasing order. */
  private readonly active: Int32Array;
  private count: number;
  /** Nearest active cluster j > i of cluster i (−1: none) and its average distance. */
  readonly near: Int32Array;
  readonly nearDist: Float64Array;
  /** 1: near/nearDist may be out of date; nearDist is then a lower bound of the nearest distance. */
  private readonly stale: Uint8Array;
  /** Scratch: one cluster's distance sums to every cluster, by cluster. */
  private readonly sums: Float64Array;

  constructor(private readonly row: Float64Array, private readonly m: number, first?: NearestLater) {
    this.size = new Float64Array(m).fill(1);
    this.rep = Int32Array.from({ length: m }, (_, i) => i);
    this.next = new Int32Array(m).fill(-1);
    this.tail = Int32Array.from({ length: m }, (_, i) => i);
    this.active = Int32Array.from({ length: m }, (_, i) => i);
    this.count = m;
    this.near = new Int32Array(m);
    this.nearDist = new Float64Array(m);
    this.stale = new Uint8Array(m);
    this.sums = new Float64Array(m);
    // Every cluster is one item (size 1), so a distance sum ÷ (1·1) is the distance itself.
    if (first) {
      this.near.set(first.near);
      this.nearDist.set(first.nearDist);
    } else for (let i = 0; i < m; i++) this.nearest(i, row.subarray(i * m, (i + 1) * m));
  }

  /**
   * The active cluster holding the closest pair (smallest distance, then smallest index); −1 when
   * none is left. A stale cache is a lower bound, so it is renewed only when it would win.
   */
  closest(): number {
    const { active, nearDist, stale } = this;
    for (;;) {
      let best = Infinity, a = -1;
      for (let p = 0; p < this.count; p++) {
        const i = active[p];
        if (nearDist[i] < best) (best = nearDist[i]), (a = i);
      }
      if (a < 0 || !stale[a]) return a;
      this.rescan(a);
    }
  }

  /** Cluster i's distance sums to every cluster, into `sums` (indexed by cluster). */
  private gather(i: number): Float64Array {
    const { sums, rep, row, m } = this;
    sums.fill(0);
    for (let j = 0, off = i * m; j < m; j++) sums[rep[j]] += row[off + j];
    return sums;
  }

  private rescan(i: number): void {
    this.nearest(i, this.gather(i));
  }

  /** near/nearDist of cluster i from its distance sums to each cluster. */
  private nearest(i: number, sums: Float64Array): void {
    const { size, active } = this;
    let best = Infinity, b = -1;
    const si = size[i];
    for (let p = this.firstAfter(i); p < this.count; p++) {
      const j = active[p];
      const v = sums[j] / (si * size[j]);
      if (v < best) (best = v), (b = j);
    }
    this.near[i] = b;
    this.nearDist[i] = best;
    this.stale[i] = 0;
  }

  /** Position in `active` of the first cluster after i (binary search). */
  private firstAfter(i: number): number {
    let lo = 0, hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.active[mid] <= i) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Cluster b (b > a) joins cluster a. A cache that named a or b only grows (an average of two
   * distances is at least the smaller one, and b is gone), so it is marked stale, keeping its old
   * distance as a lower bound; a's new distances are offered to the clusters before it.
   */
  merge(a: number, b: number): void {
    const { row, m, active } = this;
    for (let j = 0, ra = a * m, rb = b * m; j < m; j++) row[ra + j] += row[rb + j];
    for (let j = b; j >= 0; j = this.next[j]) this.rep[j] = a;
    this.next[this.tail[a]] = b;
    this.tail[a] = this.tail[b];
    this.size[a] += this.size[b];
    const pb = this.firstAfter(b) - 1;
    active.copyWithin(pb, pb + 1, this.count--);
    const sums = this.gather(a);
    this.nearest(a, sums);
    for (let p = 0; p < this.count && active[p] < b; p++) {
      const k = active[p];
      if (k === a) continue;
      if (this.near[k] === a || this.near[k] === b) this.stale[k] = 1;
      else if (k < a) this.offer(k, a, sums[k] / (this.size[k] * this.size[a]));
    }
  }

  /**
   * Cluster a's distance to k (k < a) changed to v: a becomes k's nearest when it beats the cached
   * one (a stale bound only when strictly below it: then nothing else can be as near).
   */
  private offer(k: number, a: number, v: number): void {
    if (v < this.nearDist[k] || (v === this.nearDist[k] && a < this.near[k] && !this.stale[k])) {
      this.stale[k] = 0;
      this.near[k] = a;
      this.nearDist[k] = v;
    }
  }

  labels(): Int32Array {
    return this.rep.slice();
  }
}

/** This file's classes and functions as JavaScript source, for the finish worker (correlation-finish-parallel.ts). */
export function clustersSource(): string {
  return [ThresholdComponents, averageLinkageLabels, Linkage].map(String).join('\n');
}
