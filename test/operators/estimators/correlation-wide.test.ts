/**
 * Correlation at the paper's widest d_ff (18,944; Qwen2-7B), issue 11: three (layer, precision)
 * keys of synthetic activations, 1.34 GiB of co-moments each, under a 4 GiB budget that one
 * batch's Gram (1.34 GiB resident) shares. The pass planner must split them (one key per pass:
 * two would need 4.0 GiB), the estimator must fold each pass's keys only,
 * retire them between passes, and give, for a random subsample of neuron pairs, the Pearson r of
 * a brute-force float64 two-pass computation on the raw rows (float32 Gram: within 2e-5), the same
 * |r| bins, and histograms whose counts add up to every pair and match the subsample's shares.
 * Prints its time and the process's peak RSS.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CorrelationEstimator, HISTOGRAM_BINS, correlationBin, correlationMemoryBytes } from '../../../operators/estimators/correlation.ts';
import { planCorrelationPasses } from '../../../pipelines/correlation-budget.ts';
import type { ActivationChunk } from '../../../core/types.ts';
import { chunk, gaussian, rng } from './synthetic.ts';

const D = 18944;
/** Tokens per key, in one batch: the time is d²-bound per batch (Chan's merge of batches is tested at small widths). */
const ROWS = 24;
const GiB = 1024 ** 3;
const LAYERS = [0, 14, 27];
/** Constant neurons (their pairs are undefined, never binned). */
const isConstant = (c: number) => c % 1009 === 7;

/** ROWS rows [ROWS, D] of one key: 6 latent factors with per-neuron loadings, plus noise; a few constant neurons. */
function keyRows(layer: number): Float32Array {
  const r = rng(1000 + layer);
  const F = 6;
  const load = Float32Array.from({ length: D * F }, () => gaussian(r) * (r() < 0.5 ? 0.2 : 2));
  const noise = Float32Array.from({ length: D }, () => 0.3 + 2 * r());
  const v = new Float32Array(ROWS * D);
  for (let t = 0; t < ROWS; t++) {
    const f = Array.from({ length: F }, () => gaussian(r));
    for (let c = 0; c < D; c++) {
      let x = noise[c] * gaussian(r);
      for (let k = 0; k < F; k++) x += load[c * F + k] * f[k];
      v[t * D + c] = isConstant(c) ? 1.25 : x;
    }
  }
  return v;
}

/** Pearson r of columns i, j over every row, float64, two-pass (null for a constant column). */
function bruteR(v: Float32Array, i: number, j: number): number | null {
  let mi = 0, mj = 0;
  for (let t = 0; t < ROWS; t++) (mi += v[t * D + i]), (mj += v[t * D + j]);
  mi /= ROWS;
  mj /= ROWS;
  let sij = 0, sii = 0, sjj = 0;
  for (let t = 0; t < ROWS; t++) {
    const a = v[t * D + i] - mi, b = v[t * D + j] - mj;
    sij += a * b;
    sii += a * a;
    sjj += b * b;
  }
  return sii === 0 || sjj === 0 ? null : sij / Math.sqrt(sii * sjj);
}

test('d_ff 18,944: three keys under a 4 GiB budget in two passes equal a float64 brute force on sampled pairs', async () => {
  const t0 = performance.now();
  const keys = LAYERS.map((layer) => ({ precision: 'fp32', layer, tensor: `mlp.${layer}`, width: D }));
  const plan = planCorrelationPasses(keys, { correlationBudgetBytes: 4 * GiB, runBudgetBytes: 4 * GiB, otherBytes: 0, rows: ROWS, compute: 'float32' });
  assert.is(correlationMemoryBytes(D, 1), ((D * (D + 1)) / 2) * 8);
  assert.is(plan.refusal, undefined);
  assert.equal(plan.passes.map((p) => p.length), [1, 1, 1]);
  assert.ok(correlationMemoryBytes(D, 3) + plan.gramBytes > 4 * GiB, 'the three keys do not fit together');
  assert.ok(plan.peakBytes <= 4 * GiB, `a pass holds ${plan.peakBytes} B`);

  const data = new Map(keys.map((k) => [k.layer, keyRows(k.layer)]));
  const chunks: ActivationChunk[] = [];
  for (const k of keys) chunks.push(chunk(k.precision, k.layer, k.tensor, data.get(k.layer)!, D, 0));
  const est = new CorrelationEstimator({ budgetBytes: 4 * GiB, topK: 5, compute: 'float32' });
  const r = rng(7);
  const sampleBins = new Float64Array(HISTOGRAM_BINS);
  let sampled = 0, worst = 0, edge = 0;
  for (const pass of plan.passes) {
    est.setActiveKeys(pass);
    // Every key's chunks arrive, as in a pipeline pass; only the pass's keys are folded.
    for (const c of chunks) await est.update(c);
    for (const k of pass) {
      const rows = data.get(k.layer)!;
      for (let s = 0; s < 1500; s++) {
        const i = Math.floor(r() * D), j = Math.floor(r() * D);
        if (i === j) continue;
        const want = bruteR(rows, i, j), got = est.pairCorrelation(k, i, j);
        if (want === null || got === null) {
          assert.is(got, want, `pair (${i}, ${j}) of layer ${k.layer}: constant`);
          continue;
        }
        worst = Math.max(worst, Math.abs(got - want));
        const a = Math.abs(want);
        if (Math.abs(a * HISTOGRAM_BINS - Math.round(a * HISTOGRAM_BINS)) < 1e-3) edge++;
        else assert.is(correlationBin(Math.abs(got)), correlationBin(a), `bin of (${i}, ${j})`);
        sampleBins[correlationBin(a)]++;
        sampled++;
      }
    }
    await est.retire();
    globalThis.gc?.();
  }
  assert.ok(worst < 2e-5, `max |r − r_brute| = ${worst}`);
  const res = est.finish();
  await est.release();
  assert.is(res.summaries.length, 3);
  const constants = Array.from({ length: D }, (_, c) => c).filter(isConstant).length;
  const undefinedPairs = constants * (D - constants) + (constants * (constants - 1)) / 2;
  const binned = new Float64Array(HISTOGRAM_BINS);
  for (const s of res.summaries) {
    assert.is(s.tokens, ROWS);
    assert.is(s.constant_neurons, constants);
    assert.is(s.undefined_pairs, undefinedPairs);
    const rows = res.rows.filter((x) => x.layer === s.layer);
    const total = rows.reduce((a, x) => a + x.pairs, 0);
    assert.is(total, (D * (D - 1)) / 2, `layer ${s.layer}: every pair counted once`);
    rows.forEach((x) => x.bin_lo !== null && (binned[Math.round(x.bin_lo * HISTOGRAM_BINS)] += x.pairs));
  }
  // The subsample's bin shares match the exact histograms (binomial, 5σ).
  const all = binned.reduce((a, b) => a + b, 0);
  for (let b = 0; b < HISTOGRAM_BINS; b++) {
    const p = binned[b] / all;
    const sd = Math.sqrt((p * (1 - p)) / sampled);
    assert.ok(Math.abs(sampleBins[b] / sampled - p) <= 5 * sd + 1e-3, `bin ${b}: sample ${sampleBins[b] / sampled} vs histogram ${p}`);
  }
  const rss = process.resourceUsage().maxRSS / 1024 ** 2;
  assert.ok(rss <= 4, `peak RSS ${rss} GiB, over the 4 GiB budget`);
  console.log(`d_ff ${D}: ${plan.passes.length} passes, ${sampled} sampled pairs (${edge} near an edge), max |Δr| ${worst.toExponential(2)}, ${((performance.now() - t0) / 1000).toFixed(1)} s, peak RSS ${rss.toFixed(2)} GiB`);
});

test.run();
