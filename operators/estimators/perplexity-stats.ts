/**
 * The figures of llama.cpp's `llama-perplexity --kl-divergence` summary, from running sums and
 * the sorted per-position values, with its definitions of each uncertainty (tools/perplexity/
 * perplexity.cpp, function kl_divergence; the README cites them):
 *  - mean ± sqrt((E[x²] − E[x]²)/(n − 1)) (0 when n ≤ 10 or the variance is not positive);
 *  - PPL = exp(mean NLL), its uncertainty exp(mean)·unc (first-order propagation);
 *  - ln(PPL(Q)/PPL(base)) ± sqrt(u_Q² + u_base² − 2·cov), cov = (E[ab] − E[a]E[b])/(n − 1) (0 when n < 10);
 *  - PPL ratio = exp(ln ratio) ± ratio·unc; PPL difference ± sqrt(u_Q² + u_base² − 2·PPL_Q·PPL_base·cov);
 *  - RMS Δp = sqrt(mean Δp²) ± unc(Δp², Δp⁴)/(2·RMS); same-top p ± sqrt(p(1 − p)/(n − 1));
 *  - percentile f of n sorted values: linear interpolation at f·(n − 1); the median is the 0.5 one.
 */

/** Running sums over scored positions for one (quantized, reference) pair, all float64. */
export interface PairSums {
  count: number;
  nll: number;
  nll2: number;
  nllBase: number;
  nllBase2: number;
  nllNllBase: number;
  kld: number;
  kld2: number;
  pDiff: number;
  pDiff2: number;
  pDiff4: number;
  sameTop: number;
}

export const emptyPairSums = (): PairSums => ({ count: 0, nll: 0, nll2: 0, nllBase: 0, nllBase2: 0, nllNllBase: 0, kld: 0, kld2: 0, pDiff: 0, pDiff2: 0, pDiff4: 0, sameTop: 0 });

export function meanAndUncertainty(sum: number, sum2: number, n: number): [number, number] {
  if (n < 1) return [0, 0];
  const f = sum / n;
  const v = sum2 / n - f * f;
  return [f, v > 0 && n > 10 ? Math.sqrt(v / (n - 1)) : 0];
}

export function covariance(a: number, b: number, ab: number, n: number): number {
  if (n < 10) return 0;
  return (ab / n - (a / n) * (b / n)) / (n - 1);
}

/** Percentile `f` (0…1) of ascending `sorted`, interpolated linearly at f·(n − 1). */
export function percentile(sorted: Float64Array, f: number): number {
  if (sorted.length === 0) return NaN;
  if (f <= 0) return sorted[0];
  if (f >= 1) return sorted[sorted.length - 1];
  const p = f * (sorted.length - 1);
  const i = Math.floor(p);
  const w = p - i;
  return (1 - w) * sorted[i] + w * sorted[Math.min(i + 1, sorted.length - 1)];
}

/** Percentiles reported, as in llama.cpp: name suffix → fraction. */
export const KLD_PERCENTILES: [string, number][] = [['max', 1], ['p99_9', 0.999], ['p99', 0.99], ['p95', 0.95], ['p90', 0.9], ['median', 0.5], ['p10', 0.1], ['p5', 0.05], ['p1', 0.01], ['p0_1', 0.001], ['min', 0]];
export const DELTA_P_PERCENTILES: [string, number][] = [['max', 1], ['p99_9', 0.999], ['p99', 0.99], ['p95', 0.95], ['p90', 0.9], ['p75', 0.75], ['median', 0.5], ['p25', 0.25], ['p10', 0.1], ['p5', 0.05], ['p1', 0.01], ['p0_1', 0.001], ['min', 0]];

/** Perplexity of one precision on its own: `ppl`, `ln_ppl` and their uncertainties. */
export function pplFigures(count: number, nll: number, nll2: number): Record<string, number> {
  const [ln, u] = meanAndUncertainty(nll, nll2, count);
  const ppl = Math.exp(ln);
  return { positions: count, ppl, ppl_unc: ppl * u, ln_ppl: ln, ln_ppl_unc: u };
}

/** Every figure of the llama.cpp summary for one pair; `kld` and `deltaP` are sorted ascending. */
export function pairFigures(s: PairSums, kld: Float64Array, deltaP: Float64Array): Record<string, number> {
  const n = s.count;
  const q = pplFigures(n, s.nll, s.nll2);
  const base = pplFigures(n, s.nllBase, s.nllBase2);
  const cov = covariance(s.nll, s.nllBase, s.nllNllBase, n);
  const lnRatio = q.ln_ppl - base.ln_ppl;
  const lnRatioUnc = Math.sqrt(Math.max(0, q.ln_ppl_unc ** 2 + base.ln_ppl_unc ** 2 - 2 * cov));
  const ratio = Math.exp(lnRatio);
  const [kldMean, kldUnc] = meanAndUncertainty(s.kld, s.kld2, n);
  const [dpMean, dpUnc] = meanAndUncertainty(s.pDiff, s.pDiff2, n);
  const [mse, mseUnc] = meanAndUncertainty(s.pDiff2, s.pDiff4, n);
  const rms = Math.sqrt(mse);
  const same = n > 0 ? s.sameTop / n : NaN;
  const out: Record<string, number> = {
    ...q,
    ppl_base: base.ppl,
    ppl_base_unc: base.ppl_unc,
    ln_ppl_base: base.ln_ppl,
    ln_ppl_base_unc: base.ln_ppl_unc,
    ln_ppl_cor: base.ln_ppl_unc > 0 && q.ln_ppl_unc > 0 ? cov / (q.ln_ppl_unc * base.ln_ppl_unc) : NaN,
    ln_ppl_ratio: lnRatio,
    ln_ppl_ratio_unc: lnRatioUnc,
    ppl_ratio: ratio,
    ppl_ratio_unc: ratio * lnRatioUnc,
    ppl_diff: q.ppl - base.ppl,
    ppl_diff_unc: Math.sqrt(Math.max(0, q.ppl_unc ** 2 + base.ppl_unc ** 2 - 2 * q.ppl * base.ppl * cov)),
    kld_mean: kldMean,
    kld_mean_unc: kldUnc,
  };
  for (const [name, f] of KLD_PERCENTILES) out[`kld_${name}`] = percentile(kld, f);
  out.delta_p_mean = dpMean;
  out.delta_p_mean_unc = dpUnc;
  for (const [name, f] of DELTA_P_PERCENTILES) out[`delta_p_${name}`] = percentile(deltaP, f);
  out.delta_p_rms = rms;
  out.delta_p_rms_unc = rms > 0 ? (0.5 / rms) * mseUnc : 0;
  out.same_top_p = same;
  out.same_top_p_unc = n > 1 ? Math.sqrt((same * (1 - same)) / (n - 1)) : 0;
  return out;
}
