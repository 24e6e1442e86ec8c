/**
 * measure: perplexity on synthetic logits, against a brute force written independently: each
 * sequence unpadded, a full float64 softmax per position, every figure from the per-position
 * arrays (two-pass variances and covariance, percentiles from a sorted plain array). Pad columns
 * hold huge values, so reading one by mistake shows.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PerplexityEstimator, scoredTargets, type PositionScope } from '../../../operators/estimators/perplexity.ts';
import { rng, gaussian } from './synthetic.ts';

const V = 37;

interface Seq {
  ids: number[];
  ref: number[][]; // [len][V]
  q: number[][];
}

function makeSeqs(n: number, seed: number): Seq[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const len = 2 + Math.floor(r() * 14);
    const ids = Array.from({ length: len }, () => Math.floor(r() * V));
    const ref = ids.map(() => Array.from({ length: V }, () => 3 * gaussian(r)));
    const q = ref.map((row) => row.map((x) => x + 0.4 * gaussian(r)));
    return { ids, ref, q };
  });
}

/** Left-padded [rows, T, V] batches of `rows` sequences each, pads filled with 1e6. */
function batches(seqs: Seq[], rows: number) {
  const out = [];
  for (let s = 0; s < seqs.length; s += rows) {
    const part = seqs.slice(s, s + rows);
    const T = Math.max(...part.map((x) => x.ids.length));
    const ref = new Float32Array(part.length * T * V).fill(1e6);
    const q = new Float32Array(part.length * T * V).fill(-1e6);
    part.forEach((x, b) => {
      const pad = T - x.ids.length;
      x.ref.forEach((row, t) => ref.set(row, (b * T + pad + t) * V));
      x.q.forEach((row, t) => q.set(row, (b * T + pad + t) * V));
    });
    out.push({
      seqLen: T,
      vocab: V,
      lengths: Int32Array.from(part, (x) => x.ids.length),
      ids: part.map((x) => Int32Array.from(x.ids)),
      outputs: [
        { precision: 'fp32', logits: ref },
        { precision: 'nf4', logits: q },
      ],
    });
  }
  return out;
}

function logSoftmax(row: number[]): number[] {
  // float32-stored logits, as the estimator sees them
  const xs = row.map((x) => Math.fround(x));
  const m = Math.max(...xs);
  const lse = m + Math.log(xs.reduce((a, x) => a + Math.exp(x - m), 0));
  return xs.map((x) => x - lse);
}

function bruteForce(seqs: Seq[], scope: PositionScope) {
  const nll: number[] = [], nllBase: number[] = [], kld: number[] = [], dp: number[] = [];
  let same = 0;
  for (const s of seqs) {
    const len = s.ids.length;
    const first = scope === 'all' ? 1 : Math.floor(len / 2) + 1;
    for (let j = first; j < len; j++) {
      const lr = logSoftmax(s.ref[j - 1]);
      const lq = logSoftmax(s.q[j - 1]);
      nllBase.push(-lr[s.ids[j]]);
      nll.push(-lq[s.ids[j]]);
      kld.push(lr.reduce((a, l, v) => a + Math.exp(l) * (l - lq[v]), 0));
      dp.push(Math.exp(lq[s.ids[j]]) - Math.exp(lr[s.ids[j]]));
      if (lr.indexOf(Math.max(...lr)) === lq.indexOf(Math.max(...lq))) same++;
    }
  }
  return { nll, nllBase, kld, dp, same };
}

const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
const varPop = (a: number[]) => {
  const m = mean(a);
  return a.reduce((s, x) => s + (x - m) ** 2, 0) / a.length;
};
const cov = (a: number[], b: number[]) => {
  const ma = mean(a), mb = mean(b);
  return a.reduce((s, x, i) => s + (x - ma) * (b[i] - mb), 0) / a.length / (a.length - 1);
};
function sortedPercentile(a: number[], f: number): number {
  const s = [...a].sort((x, y) => x - y);
  if (f === 0.5) return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  const pos = f * (s.length - 1);
  const lo = s[Math.floor(pos)], hi = s[Math.ceil(pos)];
  return lo + (hi - lo) * (pos - Math.floor(pos));
}

function close(got: number, want: number, what: string, tol = 1e-9) {
  assert.ok(Math.abs(got - want) <= tol * Math.max(1e-12, Math.abs(want)), `${what}: ${got} vs brute force ${want}`);
}

for (const scope of ['all', 'second-half'] as const) {
  test(`every figure equals the brute force (${scope})`, () => {
    const seqs = makeSeqs(40, scope === 'all' ? 7 : 8);
    const est = new PerplexityEstimator('fp32', ['fp32', 'nf4'], scope);
    for (const b of batches(seqs, 6)) est.update(b);
    const { summary, rows } = est.finish();
    const bf = bruteForce(seqs, scope);
    const n = bf.nll.length;
    const f = summary.precisions.nf4;
    const ref = summary.precisions.fp32;
    assert.is(f.positions, n);
    assert.is(n, seqs.reduce((a, s) => a + (s.ids.length - scoredTargets(s.ids.length, scope)[0]), 0));
    const uLn = Math.sqrt(varPop(bf.nll) / (n - 1));
    const uLnBase = Math.sqrt(varPop(bf.nllBase) / (n - 1));
    close(ref.ppl, Math.exp(mean(bf.nllBase)), 'PPL(base)');
    close(f.ppl_base, Math.exp(mean(bf.nllBase)), 'PPL(base) in the pair');
    close(f.ppl, Math.exp(mean(bf.nll)), 'PPL(Q)');
    close(f.ppl_unc, Math.exp(mean(bf.nll)) * uLn, 'PPL(Q) uncertainty', 1e-7);
    close(f.ln_ppl_unc, uLn, 'ln PPL(Q) uncertainty', 1e-7);
    const c = cov(bf.nll, bf.nllBase);
    close(f.ln_ppl_ratio, mean(bf.nll) - mean(bf.nllBase), 'ln ratio');
    close(f.ln_ppl_ratio_unc, Math.sqrt(uLn ** 2 + uLnBase ** 2 - 2 * c), 'ln ratio uncertainty', 1e-6);
    close(f.ppl_ratio, Math.exp(mean(bf.nll) - mean(bf.nllBase)), 'PPL ratio');
    close(f.ln_ppl_cor, c / (uLn * uLnBase), 'correlation', 1e-6);
    close(f.kld_mean, mean(bf.kld), 'KLD mean');
    close(f.kld_mean_unc, Math.sqrt(varPop(bf.kld) / (n - 1)), 'KLD uncertainty', 1e-6);
    for (const [k, p] of [['max', 1], ['p99_9', 0.999], ['p99', 0.99], ['p95', 0.95], ['p90', 0.9], ['median', 0.5], ['p10', 0.1], ['p5', 0.05], ['p1', 0.01], ['min', 0]] as const) {
      close(f[`kld_${k}`], sortedPercentile(bf.kld, p), `KLD ${k}`);
      close(f[`delta_p_${k}`], sortedPercentile(bf.dp, p), `Δp ${k}`);
    }
    close(f.delta_p_mean, mean(bf.dp), 'Δp mean');
    const ms = mean(bf.dp.map((x) => x * x));
    close(f.delta_p_rms, Math.sqrt(ms), 'RMS Δp');
    close(f.delta_p_rms_unc, (0.5 / Math.sqrt(ms)) * Math.sqrt(varPop(bf.dp.map((x) => x * x)) / (n - 1)), 'RMS Δp uncertainty', 1e-6);
    close(f.same_top_p, bf.same / n, 'same top p');
    close(f.same_top_p_unc, Math.sqrt(((bf.same / n) * (1 - bf.same / n)) / (n - 1)), 'same top p uncertainty');
    const row = rows.find((r) => r.precision === 'nf4' && r.metric === 'kld_mean')!;
    assert.is(row.value, f.kld_mean);
    assert.is(row.uncertainty, f.kld_mean_unc);
    assert.is(rows.find((r) => r.precision === 'nf4' && r.metric === 'kld_p99')!.uncertainty, null);
  });
}

test('uncertainties are 0 for ten positions or fewer, as in llama.cpp', () => {
  const seqs = makeSeqs(1, 3).map((s) => ({ ...s, ids: s.ids.slice(0, 5), ref: s.ref.slice(0, 5), q: s.q.slice(0, 5) }));
  const est = new PerplexityEstimator('fp32', ['fp32', 'nf4']);
  for (const b of batches(seqs, 1)) est.update(b);
  const f = est.finish().summary.precisions.nf4;
  assert.is(f.positions, 4);
  assert.is(f.kld_mean_unc, 0);
  assert.is(f.ppl_unc, 0);
  assert.ok(f.kld_mean > 0);
});

test.run();
