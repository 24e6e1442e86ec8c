/**
 * correlation's pass over every pair (four pairs an iteration, a rare branch for constants, top-k
 * and the cut) against the plain loop it replaced — one pair at a time, correlationBin, every test
 * on every pair — on packed triangles with |r| exactly on the bin edges, one ulp either side,
 * beyond ±1 (clamped), ties for the top-k and constant neurons.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HISTOGRAM_BINS, TopPairs, binPairs, correlationBin, type PairInputs } from '../../../operators/estimators/correlation-pairs.ts';
import { ThresholdComponents } from '../../../operators/estimators/correlation-clusters.ts';
import { rng } from './synthetic.ts';

/** Components that also record every pair unioned (the cut's pairs, not only its components). */
class Recording extends ThresholdComponents {
  readonly pairs: string[] = [];
  override union(a: number, b: number): void {
    this.pairs.push(`${a},${b}`);
    super.union(a, b);
  }
}

function plainLoop(p: PairInputs, top: TopPairs, cluster: { components: ThresholdComponents; threshold: number } | null) {
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
      const r = Math.max(-1, Math.min(1, p.upper[k] / (p.sd[i] * p.sd[j])));
      const a = Math.abs(r);
      hist[correlationBin(a)]++;
      top.offer(i, j, r);
      if (cluster && 1 - a <= cluster.threshold) cluster.components.union(i, j);
    }
  }
  return { hist, undefinedPairs };
}

const ulp = (x: number, dir: 1 | -1) => {
  const f = new Float64Array([x]);
  const b = new BigInt64Array(f.buffer);
  if (x === 0) return dir > 0 ? Number.MIN_VALUE : -Number.MIN_VALUE;
  b[0] += BigInt(x > 0 === dir > 0 ? 1 : -1);
  return f[0];
};

/** A packed triangle whose off-diagonal r values are edges, edges ± 1 ulp, values past ±1, repeats and noise. */
function inputs(d: number, seed: number, constantEvery: number): PairInputs {
  const r = rng(seed);
  const sd = Float64Array.from({ length: d }, () => (r() < 0.5 ? 1 : 0.5 + r()));
  const constant = Uint8Array.from({ length: d }, (_, i) => (constantEvery > 0 && i % constantEvery === 3 ? 1 : 0));
  const upper = new Float64Array((d * (d + 1)) / 2);
  for (let i = 0, k = 0; i < d; i++) {
    upper[k++] = sd[i] * sd[i];
    for (let j = i + 1; j < d; j++, k++) {
      const e = Math.floor(r() * 11) / 10;
      const pick = r();
      let v = pick < 0.3 ? e : pick < 0.45 ? ulp(e, 1) : pick < 0.6 ? ulp(e, -1) : pick < 0.65 ? 1 + r() * 1e-9 : pick < 0.7 ? 0.95 : r();
      if (r() < 0.5) v = -v;
      upper[k] = v * sd[i] * sd[j];
    }
  }
  return { width: d, upper, constant, sd };
}

test('the unrolled pass equals the plain loop: histogram, undefined pairs, top pairs, components', () => {
  let cases = 0;
  for (const d of [1, 2, 3, 5, 8, 13, 64, 257]) {
    for (const [seed, constantEvery, topK, threshold] of [[1, 0, 20, 0.5], [2, 7, 5, 0.05], [3, 4, 0, 0.95], [4, 0, 100000, 1], [5, 2, 3, 0], [6, 3, 0, 0.5], [7, 0, 0, 0.7]] as const) {
      const p = inputs(d, seed * 100 + d, constantEvery);
      const topA = new TopPairs(topK), topB = new TopPairs(topK);
      const cA = new Recording(d), cB = new Recording(d);
      const got = binPairs(p, topA, { components: cA, threshold });
      const want = plainLoop(p, topB, { components: cB, threshold });
      const where = `d ${d}, seed ${seed}`;
      assert.equal([...got.hist], [...want.hist], `${where}: histogram`);
      assert.is(got.undefinedPairs, want.undefinedPairs, `${where}: undefined pairs`);
      assert.equal(topA.sorted(), topB.sorted(), `${where}: top pairs`);
      assert.equal(cA.groups().map((g) => [...g]), cB.groups().map((g) => [...g]), `${where}: components`);
      assert.equal(cA.pairs.sort(), cB.pairs.sort(), `${where}: the pairs within the cut`);
      const pairs = (d * (d - 1)) / 2;
      assert.is(got.hist.reduce((s, x) => s + x, 0) + got.undefinedPairs, pairs, `${where}: every pair counted once`);
      cases++;
    }
  }
  assert.is(cases, 56);
});

test('without clustering the pass gives the same histogram and top pairs', () => {
  const p = inputs(300, 9, 11);
  const topA = new TopPairs(20), topB = new TopPairs(20);
  const got = binPairs(p, topA, null);
  const want = plainLoop(p, topB, null);
  assert.equal([...got.hist], [...want.hist]);
  assert.equal(topA.sorted(), topB.sorted());
  // Edges and values past 1 are there to be decided: the last bin holds the |r| = 1 pairs.
  assert.ok(got.hist[HISTOGRAM_BINS - 1] > 0);
});

test('an overflowed neuron (sd = ∞, its pairs NaN) is handled as the plain loop does: its NaN pairs are in no bin', () => {
  const p = inputs(37, 21, 0);
  const d = p.width;
  p.sd[5] = Infinity;
  for (let i = 0, k = 0; i < d; i++) for (let j = i; j < d; j++, k++) if (i === 5 || j === 5) p.upper[k] = Infinity;
  const topA = new TopPairs(10), topB = new TopPairs(10);
  const cA = new Recording(d), cB = new Recording(d);
  const got = binPairs(p, topA, { components: cA, threshold: 0.5 });
  const want = plainLoop(p, topB, { components: cB, threshold: 0.5 });
  assert.equal([...got.hist], [...want.hist]);
  assert.equal(topA.sorted(), topB.sorted());
  assert.equal(cA.pairs.sort(), cB.pairs.sort());
  assert.is(got.hist.reduce((s, x) => s + x, 0), (d * (d - 1)) / 2 - (d - 1), 'the d − 1 NaN pairs are in no bin');
});

test.run();
