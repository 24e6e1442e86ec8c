/**
 * The finish's clustering against an independent naive O(m³) UPGMA: every step recomputes each
 * pair of clusters' average from the item distances and merges the smallest, ties to the first
 * pair with clusters ordered by their smallest item. Distances are multiples of 1/8, so sums are
 * exact in float64 and ties really are ties (the case where merge order decides the result).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ThresholdComponents, averageLinkageLabels } from '../../../operators/estimators/correlation-clusters.ts';
import { rng } from './synthetic.ts';
import { naiveUpgma } from './naive-upgma.ts';

/** Naive UPGMA cut at `threshold`; the label of an item is the smallest item of its cluster. */
function naiveLabels(dist: number[][], threshold: number): Int32Array {
  const labels = new Int32Array(dist.length);
  for (const g of naiveUpgma(dist, threshold)) for (const i of g) labels[i] = Math.min(...g);
  return labels;
}

/** A symmetric m×m matrix of multiples of 1/8 in [0, 1] drawn from `levels` values (few levels: many ties). */
function tiedMatrix(r: () => number, m: number, levels: number): number[][] {
  const d = Array.from({ length: m }, () => new Array<number>(m).fill(0));
  for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) d[i][j] = d[j][i] = Math.floor(r() * levels) / 8;
  return d;
}

const flat = (d: number[][]) => Float64Array.from(d.flat());

test('greedy average linkage equals a naive O(m³) UPGMA on random matrices with ties', () => {
  const r = rng(7);
  let merged = 0;
  for (let trial = 0; trial < 300; trial++) {
    const m = 2 + Math.floor(r() * 28);
    const d = tiedMatrix(r, m, 2 + Math.floor(r() * 7));
    for (const threshold of [0.25, 0.375, 0.5]) {
      const want = naiveLabels(d, threshold);
      const got = averageLinkageLabels(flat(d), m, threshold);
      assert.equal([...got], [...want], `trial ${trial}, m ${m}, threshold ${threshold}`);
      merged += want.filter((l, i) => l !== i).length;
    }
  }
  assert.ok(merged > 1000, `the matrices merged (${merged} items joined a cluster)`);
});

/** Each item's nearest later item by its definition (first j > i at the smallest distance). */
function nearestLater(d: number[][]): { near: Int32Array; nearDist: Float64Array } {
  const m = d.length;
  const near = new Int32Array(m).fill(-1), nearDist = new Float64Array(m).fill(Infinity);
  for (let i = 0; i < m; i++) {
    const later = d[i].slice(i + 1);
    if (!later.length) continue;
    nearDist[i] = Math.min(...later);
    near[i] = i + 1 + later.indexOf(nearDist[i]);
  }
  return { near, nearDist };
}

test('a first scan handed in (as componentDistances finds it) gives the naive UPGMA labels too', () => {
  const r = rng(11);
  for (let trial = 0; trial < 200; trial++) {
    const m = 2 + Math.floor(r() * 28);
    const d = tiedMatrix(r, m, 2 + Math.floor(r() * 7));
    for (const threshold of [0.25, 0.5]) {
      const got = averageLinkageLabels(flat(d), m, threshold, nearestLater(d));
      assert.equal([...got], [...naiveLabels(d, threshold)], `trial ${trial}, m ${m}, threshold ${threshold}`);
    }
  }
});

test('a tie decides the clusters: the first pair in item order merges first', () => {
  // a–b and b–c tie at 0.25; merging a, b first leaves c to join d at 0.375 (2 clusters), merging
  // b, c first would leave a and d alone (3 clusters). The naive order takes (a, b).
  const d = [
    [0, 0.25, 0.875, 0.875],
    [0.25, 0, 0.25, 0.875],
    [0.875, 0.25, 0, 0.375],
    [0.875, 0.875, 0.375, 0],
  ];
  assert.equal([...averageLinkageLabels(flat(d), 4, 0.5)], [0, 0, 2, 2]);
  assert.equal([...naiveLabels(d, 0.5)], [0, 0, 2, 2]);
});

test('clustering each component of "distance ≤ threshold" alone gives the whole matrix clusters', () => {
  const r = rng(3);
  for (let trial = 0; trial < 200; trial++) {
    const m = 2 + Math.floor(r() * 40);
    const d = tiedMatrix(r, m, 3 + Math.floor(r() * 6));
    const threshold = [0.125, 0.25, 0.375][trial % 3];
    const components = new ThresholdComponents(m);
    for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) if (d[i][j] <= threshold) components.union(i, j);
    const labels = Int32Array.from({ length: m }, (_, i) => i);
    for (const g of components.groups()) {
      const sub = Float64Array.from({ length: g.length * g.length }, (_, k) => d[g[Math.floor(k / g.length)]][g[k % g.length]]);
      averageLinkageLabels(sub, g.length, threshold).forEach((l, p) => (labels[g[p]] = g[l]));
    }
    assert.equal([...labels], [...averageLinkageLabels(flat(d), m, threshold)], `trial ${trial}`);
  }
});

test.run();
