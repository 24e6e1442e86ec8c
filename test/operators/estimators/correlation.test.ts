import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CorrelationEstimator,
  averageLinkageLabels,
  checkCorrelationBudget,
  correlationMemoryBytes,
  type CorrelationResult,
} from '../../../operators/estimators/correlation.ts';
import { GramRunner, gramAt, gramBlocks } from '../../../operators/estimators/correlation-graph.ts';
import { isQuantlensError } from '../../../core/errors.ts';
import type { ActivationChunk } from '../../../core/types.ts';
import { chunk, gaussian, rng } from './synthetic.ts';
import { naiveUpgma } from './naive-upgma.ts';

const D = 40;
const runner = new GramRunner();

/**
 * Planted structure: n1 = 2·n0 + 3 (r = 1), n2 = −n0 (r = −1), n3 and n4 constant, n5 ≈ n6;
 * neurons 10–19 and 20–29 share a latent factor each (two redundancy clusters), 30–34 and
 * 35–39 weakly; the rest are independent.
 */
function makeChunks(seed: number): ActivationChunk[] {
  const r = rng(seed);
  const out: ActivationChunk[] = [];
  let b = 0;
  for (const rowsPerBatch of [17, 64, 1, 33, 90, 50, 12, 70]) {
    for (const precision of ['fp32', 'q4']) {
      for (const layer of [0, 2]) {
        const v = new Float32Array(rowsPerBatch * D);
        for (let t = 0; t < rowsPerBatch; t++) {
          const row = v.subarray(t * D, (t + 1) * D);
          const x = gaussian(r) + 5;
          row[0] = x;
          row[1] = 2 * x + 3;
          row[2] = -x;
          row[3] = 0.3;
          row[4] = 7.5;
          row[5] = gaussian(r);
          row[6] = row[5] + 0.05 * gaussian(r);
          const f1 = gaussian(r), f2 = gaussian(r);
          for (let c = 7; c < D; c++) row[c] = gaussian(r) * (precision === 'q4' ? 1.5 : 1);
          for (let c = 10; c < 20; c++) row[c] = f1 + 0.4 * gaussian(r) + layer;
          for (let c = 20; c < 30; c++) row[c] = -f2 + 0.6 * gaussian(r);
          // Two groups near the 0.5 cut (r = 1/(1+σ²) ≈ 0.55 and 0.45), so the threshold matters.
          const f3 = gaussian(r), f4 = gaussian(r);
          for (let c = 30; c < 35; c++) row[c] = f3 + 0.9 * gaussian(r);
          for (let c = 35; c < 40; c++) row[c] = f4 + 1.1 * gaussian(r);
        }
        out.push(chunk(precision, layer, 'act', v, D, b));
      }
    }
    b++;
  }
  return out;
}

/** Exact float64 correlation matrix of one key's rows, two-pass. */
function bruteCorrelation(chunks: ActivationChunk[], precision: string, layer: number) {
  const rows: Float64Array[] = [];
  for (const ch of chunks) if (ch.precision === precision && ch.layer === layer) for (let t = 0; t < ch.rows; t++) rows.push(Float64Array.from(ch.values.subarray(t * D, (t + 1) * D)));
  const n = rows.length;
  const mean = new Float64Array(D);
  for (const x of rows) for (let c = 0; c < D; c++) mean[c] += x[c] / n;
  const cov = Array.from({ length: D }, () => new Float64Array(D));
  for (const x of rows) for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) cov[i][j] += (x[i] - mean[i]) * (x[j] - mean[j]);
  const constant = Array.from({ length: D }, (_, c) => rows.every((x) => x[c] === rows[0][c]));
  const r = (i: number, j: number) => cov[i][j] / Math.sqrt(cov[i][i] * cov[j][j]);
  return { n, r, constant };
}

function bruteClusters(dist: number[][], threshold: number): { clusters: number; singletons: number } {
  const groups = naiveUpgma(dist, threshold);
  return { clusters: groups.length, singletons: groups.filter((g) => g.length === 1).length };
}

function checkAgainstBrute(res: CorrelationResult, chunks: ActivationChunk[], rTol = 1e-9) {
  assert.is(res.summaries.length, 4);
  let anyAmbiguous = 0;
  for (const s of res.summaries) {
    const bf = bruteCorrelation(chunks, s.precision, s.layer);
    assert.is(s.tokens, bf.n);
    const expected = new Array(10).fill(0);
    let ambiguous = 0, undef = 0;
    const pairs: { i: number; j: number; r: number }[] = [];
    for (let i = 0; i < D; i++) {
      for (let j = i + 1; j < D; j++) {
        if (bf.constant[i] || bf.constant[j]) { undef++; continue; }
        const r = Math.max(-1, Math.min(1, bf.r(i, j)));
        const a = Math.abs(r);
        pairs.push({ i, j, r });
        let k = 0;
        while (k < 9 && a >= (k + 1) / 10) k++;
        expected[k]++;
        for (let e = 1; e < 10; e++) if (Math.abs(a - e / 10) < 1e-5) ambiguous++;
      }
    }
    anyAmbiguous += ambiguous;
    const rows = res.rows.filter((r) => r.precision === s.precision && r.layer === s.layer);
    assert.is(rows.length, 11);
    assert.equal(rows[0].bin_lo, null);
    assert.is(rows[0].pairs, undef);
    assert.is(s.undefined_pairs, undef);
    assert.is(s.constant_neurons, 2);
    let diff = 0;
    for (let k = 0; k < 10; k++) {
      assert.is(rows[k + 1].bin_lo, k / 10);
      assert.is(rows[k + 1].bin_hi, (k + 1) / 10);
      diff += Math.abs(rows[k + 1].pairs - expected[k]);
    }
    assert.ok(diff <= 2 * ambiguous, `histogram differs by ${diff} with ${ambiguous} pairs near an edge: ${rows.map((r) => r.pairs)} vs ${expected}`);
    assert.is(rows.slice(1).reduce((a, r) => a + r.pairs, 0), pairs.length);
    // The planted |r| = 1 pairs land in the last bin.
    assert.ok(expected[9] >= 3 && rows[10].pairs >= 3);
    // Top pairs: same |r| as the brute-force ranking.
    pairs.sort((x, y) => Math.abs(y.r) - Math.abs(x.r));
    assert.is(s.top_pairs.length, 20);
    for (let t = 0; t < 20; t++) {
      assert.ok(Math.abs(Math.abs(s.top_pairs[t].r) - Math.abs(pairs[t].r)) < rTol, `top ${t}: ${JSON.stringify(s.top_pairs[t])} vs ${JSON.stringify(pairs[t])}`);
      const p = s.top_pairs[t];
      assert.ok(Math.abs(p.r - bf.r(p.i, p.j)) < rTol);
    }
    assert.ok(s.top_pairs.slice(0, 3).some((p) => p.i === 0 && p.j === 2 && p.r < -0.999999), 'anti-correlated pair at the top');
    // Clusters: naive average linkage over the defined neurons.
    const defined = [...Array(D).keys()].filter((c) => !bf.constant[c]);
    const dist = defined.map((i) => defined.map((j) => (i === j ? 0 : 1 - Math.abs(Math.max(-1, Math.min(1, bf.r(i, j)))))));
    const bc = bruteClusters(dist, 0.5);
    assert.is(s.clusters, bc.clusters);
    assert.is(s.independent_neurons, bc.singletons);
    assert.ok(bc.clusters < defined.length - 15, 'planted clusters were found');
  }
  return anyAmbiguous;
}

test('histogram, undefined pairs, top pairs and clusters match a float64 brute force', async () => {
  const chunks = makeChunks(11);
  const est = new CorrelationEstimator({ runner, compute: 'float64' });
  for (const c of chunks) await est.update(c);
  const amb = checkAgainstBrute(est.finish(), chunks);
  console.log(`pairs within 1e-5 of a bin edge: ${amb}`);
});

test('4 shard states merged through JSON equal one pass', async () => {
  const chunks = makeChunks(12);
  const single = new CorrelationEstimator({ runner, compute: 'float64' });
  // Not awaiting each update: the estimator queues them in order.
  for (const c of chunks) void single.update(c);
  await single.drain();
  const states = [];
  for (let s = 0; s < 4; s++) {
    const e = new CorrelationEstimator({ runner, compute: 'float64' });
    for (const c of chunks) if (c.batchIndex % 4 === s) await e.update(c);
    states.push(JSON.parse(JSON.stringify(e.state())));
  }
  const merged = new CorrelationEstimator({ runner, compute: 'float64' });
  for (const s of states) merged.merge(s);
  const a = single.state();
  const b = merged.state();
  assert.is(a.entries.length, b.entries.length);
  const { decodeF64 } = await import('../../../operators/estimators/state-codec.ts');
  for (let k = 0; k < a.entries.length; k++) {
    assert.is(b.entries[k].n, a.entries[k].n);
    assert.is(b.entries[k].min, a.entries[k].min);
    assert.is(b.entries[k].max, a.entries[k].max);
    for (const f of ['mean', 'upper'] as const) {
      const x = decodeF64(a.entries[k][f]), y = decodeF64(b.entries[k][f]);
      let scale = 0;
      for (const v of x) scale = Math.max(scale, Math.abs(v));
      // Relative to the entry or to the matrix scale (entries that cancel to ~0 carry no relative meaning).
      for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= 1e-9 * Math.max(Math.abs(x[i]), 1e-6 * scale), `${f}[${i}] ${x[i]} vs ${y[i]}`);
    }
  }
  checkAgainstBrute(merged.finish(), chunks);
});

test('float32 Gram graph gives the same histogram within the edge band', async () => {
  const chunks = makeChunks(13);
  const est = new CorrelationEstimator({ runner, compute: 'float32' });
  for (const c of chunks) await est.update(c);
  checkAgainstBrute(est.finish(), chunks, 1e-5);
});

test('budget is refused before any work', async () => {
  // The upper triangle only (issue 11): d(d+1)/2 float64 per key.
  assert.is(correlationMemoryBytes(1024, 3), ((1024 * 1025) / 2) * 8 * 3);
  let calls = 0;
  class CountingRunner extends GramRunner {
    override run(...args: Parameters<GramRunner['run']>) { calls++; return super.run(...args); }
  }
  const err = (fn: () => unknown) => { try { fn(); } catch (e) { return e; } return null; };
  const e1 = err(() => new CorrelationEstimator({ plan: { width: 16384, keys: 5 } }));
  assert.ok(isQuantlensError(e1) && e1.code === 'BUDGET', String(e1));
  assert.ok(isQuantlensError(err(() => checkCorrelationBudget(100, 1, ((100 * 101) / 2) * 8 - 1))));
  assert.is(err(() => checkCorrelationBudget(100, 1, ((100 * 101) / 2) * 8)), null);
  const est = new CorrelationEstimator({ runner: new CountingRunner(), budgetBytes: ((D * (D + 1)) / 2) * 8 * 2 });
  const chunks = makeChunks(1);
  await est.update(chunks[0]);
  await est.update(chunks[1]);
  const e2 = err(() => est.update(chunks[2]));
  assert.ok(isQuantlensError(e2) && e2.code === 'BUDGET', String(e2));
  assert.is(calls, 2);
});

test('finish before updates settle is a STATE error; clustering helper on a toy matrix', async () => {
  const est = new CorrelationEstimator({ runner, compute: 'float64' });
  const p = est.update(makeChunks(2)[0]);
  assert.throws(() => est.finish(), /still running/);
  await p;
  assert.is(est.finish().summaries.length, 1);
  // Items 0,1 at distance 0.1, item 2 at 0.5/0.7 from them: average = 0.6 > 0.5, so 2 stays apart.
  const dist = Float64Array.from([0, 0.1, 0.5, 0.1, 0, 0.7, 0.5, 0.7, 0]);
  const labels = averageLinkageLabels(dist, 3, 0.5);
  assert.is(labels[0], labels[1]);
  assert.ok(labels[2] !== labels[0]);
});

test('blocked upper-triangle Gram: ragged blocks hold every i ≤ j, equal to a float64 brute force', async () => {
  const d = 37, n = 23;
  const r = rng(9);
  const x = Float32Array.from({ length: n * d }, (_, k) => gaussian(r) + (k % d === 4 ? 50 : 0));
  const blocked = new GramRunner(undefined, 8);
  const res = await blocked.run(x, n, d, 'float64');
  assert.is(res.blocks.length, (5 * 6) / 2, '5 column blocks → 15 on or above the diagonal');
  assert.equal(gramBlocks(d, 8).map((b) => b.size), [8, 8, 8, 8, 5]);
  const mean = new Float64Array(d);
  for (let t = 0; t < n; t++) for (let c = 0; c < d; c++) mean[c] += x[t * d + c] / n;
  for (let i = 0; i < d; i++)
    for (let j = i; j < d; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += (x[t * d + i] - mean[i]) * (x[t * d + j] - mean[j]);
      assert.ok(Math.abs(gramAt(res, i, j) - s) <= 1e-9 * Math.max(1, Math.abs(s)), `G[${i}][${j}]`);
    }
  // The estimator fed blocked Grams equals the one fed a single block, to float64 rounding.
  const one = new CorrelationEstimator({ runner, compute: 'float64' });
  const many = new CorrelationEstimator({ runner: blocked, compute: 'float64' });
  for (const e of [one, many]) for (let b = 0; b < 3; b++) await e.update(chunk('fp32', 0, 'act', x, d, b));
  const [a, b] = [one.state().entries[0], many.state().entries[0]];
  const ua = Buffer.from(a.upper, 'base64'), ub = Buffer.from(b.upper, 'base64');
  const fa = new Float64Array(ua.buffer, ua.byteOffset, ua.length / 8), fb = new Float64Array(ub.buffer, ub.byteOffset, ub.length / 8);
  for (let k = 0; k < fa.length; k++) assert.ok(Math.abs(fa[k] - fb[k]) <= 1e-11 * Math.max(1, Math.abs(fa[k])), `packed ${k}`);
  assert.equal(one.finish().rows, many.finish().rows);
  await blocked.release();
});

test('Gram graph column min/max equal a brute force exactly; a column constant per batch but not overall is not constant', async () => {
  const d = 21, n = 19;
  const r = rng(4);
  // Column 3 constant, column 7 negative, column 11 with one large outlier, the rest Gaussian.
  const make = (shift: number) =>
    Float32Array.from({ length: n * d }, (_, k) => {
      const c = k % d;
      return c === 3 ? 0.25 : c === 5 ? shift : c === 7 ? -Math.abs(gaussian(r)) - 2 : c === 11 && k === 11 ? 1e6 : gaussian(r);
    });
  const blocked = new GramRunner(undefined, 8);
  for (const compute of ['float32', 'float64'] as const) {
    for (const rows of [1, n]) {
      const x = make(1);
      const g = await blocked.run(x, rows, d, compute);
      for (let c = 0; c < d; c++) {
        let lo = Infinity, hi = -Infinity;
        for (let t = 0; t < rows; t++) (lo = Math.min(lo, x[t * d + c])), (hi = Math.max(hi, x[t * d + c]));
        assert.is(g.min[c], lo, `${compute} rows ${rows} min[${c}]`);
        assert.is(g.max[c], hi, `${compute} rows ${rows} max[${c}]`);
      }
    }
  }
  await blocked.release();
  // Column 5 is constant within each batch (1, then 2): only the range across batches tells it apart.
  const e = new CorrelationEstimator({ runner });
  await e.update(chunk('fp32', 0, 'act', make(1), d, 0));
  await e.update(chunk('fp32', 0, 'act', make(2), d, 1));
  const s = e.finish().summaries[0];
  assert.is(s.constant_neurons, 1, 'only column 3 is constant');
  assert.is(e.pairCorrelation({ precision: 'fp32', layer: 0, tensor: 'act' }, 3, 4), null);
  assert.ok(e.pairCorrelation({ precision: 'fp32', layer: 0, tensor: 'act' }, 5, 4) !== null);
});

test('timing: ORT centred Gram vs a JS triple loop at d=512 (printed, not asserted)', async () => {
  const d = 512, n = 512;
  const r = rng(5);
  const x = Float32Array.from({ length: n * d }, () => gaussian(r));
  await runner.run(x, n, d, 'float64');
  let t0 = performance.now();
  const ortRes = await runner.run(x, n, d, 'float64');
  const ortMs = performance.now() - t0;
  t0 = performance.now();
  const mean = new Float64Array(d);
  for (let t = 0; t < n; t++) for (let c = 0; c < d; c++) mean[c] += x[t * d + c];
  for (let c = 0; c < d; c++) mean[c] /= n;
  const xc = new Float64Array(n * d);
  for (let t = 0; t < n; t++) for (let c = 0; c < d; c++) xc[t * d + c] = x[t * d + c] - mean[c];
  const g = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) {
    let s = 0;
    for (let t = 0; t < n; t++) s += xc[t * d + i] * xc[t * d + j];
    g[i * d + j] = s;
  }
  const jsMs = performance.now() - t0;
  for (const [i, j] of [[0, 0], [3, 400], [511, 511]]) assert.ok(Math.abs(g[i * d + j] - gramAt(ortRes, i, j)) < 1e-9 * Math.max(1, Math.abs(g[i * d + j])));
  console.log(`gram d=${d} n=${n}: ORT float64 ${ortMs.toFixed(1)} ms, JS triple loop (upper triangle) ${jsMs.toFixed(1)} ms, ratio ${(jsMs / ortMs).toFixed(1)}x`);
});

test.after(async () => { await runner.release(); });

test.run();
