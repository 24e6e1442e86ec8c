/**
 * The percentile bootstrap behind calibration's 95% intervals of accuracy and ACE: resample the n
 * examples with replacement `resamples` times, each resample's accuracy and ACE, then the
 * 2.5th/97.5th percentiles (operators/estimators/calibration.ts).
 *
 * It runs resamples × n draws, so it is what the end of a large run costs. One resample is two
 * allocation-free passes over typed arrays: n draws of mulberry32 (core/random.ts, inlined here;
 * the same stream, so the same draws as `recs[Math.floor(rand() * n)]`) that count multiplicities
 * by calibration rank, then one sequential pass that fills the equal-mass bins from those counts
 * and zeroes them for the next resample. Accuracy comes out of the same pass (the bins hold every
 * draw), so the multiplicities are drawn once and shared by both statistics.
 */

/** Per-resample statistics, in resample order (not sorted). */
export interface BootstrapDraws {
  accuracy: Float64Array;
  ace: Float64Array;
}

/**
 * `conf` and `correct` in calibration order (by rank); `rank[i]` is the rank of input item i, so
 * draw j picks input item j as a brute force over the input order would.
 */
export function bootstrapAccuracyAce(conf: Float64Array, correct: Uint8Array, rank: Uint32Array, massBins: number, resamples: number, seed: number): BootstrapDraws {
  const n = conf.length;
  const weight = new Uint32Array(n);
  const accuracy = new Float64Array(resamples), ace = new Float64Array(resamples);
  const tally = { correct: 0 };
  let a = seed >>> 0; // mulberry32's state
  for (let s = 0; s < resamples; s++) {
    for (let t = 0; t < n; t++) {
      a = (a + 0x6d2b79f5) | 0;
      let x = Math.imul(a ^ (a >>> 15), a | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      weight[rank[Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n)]]++;
    }
    ace[s] = resampledAce(conf, correct, weight, massBins, tally);
    accuracy[s] = tally.correct / n;
  }
  return { accuracy, ace };
}

/** Bin cursor of one resample's pass: bin b, its size, copies it still needs, its sums so far. */
interface BinCursor {
  b: number;
  count: number;
  need: number;
  correct: number;
  conf: number;
  gapSum: number;
  nonEmpty: number;
  allCorrect: number;
}

/**
 * ACE of the resample whose rank-r item appears weight[r] times (Σ weight = n), exactly as
 * equalMass in calibration.ts sums it (the same sums in the same order, so the same value); the
 * resample's correct count goes to tally.correct. Leaves weight all zero. The common case — an
 * item that does not fill its bin, weight 0 included — is one predictable branch.
 */
function resampledAce(conf: Float64Array, correct: Uint8Array, weight: Uint32Array, nBins: number, tally: { correct: number }): number {
  const n = conf.length;
  const base = Math.floor(n / nBins);
  const extra = n % nBins;
  const c: BinCursor = { b: 0, count: 0, need: 0, correct: 0, conf: 0, gapSum: 0, nonEmpty: 0, allCorrect: 0 };
  c.count = c.need = base + (extra > 0 ? 1 : 0);
  // Bins that take no items (fewer items than bins) close at once.
  while (c.need === 0 && c.b < nBins) c.count = c.need = base + (++c.b < extra ? 1 : 0);
  let need = c.need, binCorrect = 0, binConf = 0;
  for (let i = 0; i < n; i++) {
    const w = weight[i];
    weight[i] = 0;
    if (w < need) {
      need -= w;
      binCorrect += w * correct[i];
      binConf += w * conf[i];
      continue;
    }
    c.need = need;
    c.correct = binCorrect;
    c.conf = binConf;
    spill(c, w, correct[i], conf[i], base, extra, nBins);
    need = c.need;
    binCorrect = c.correct;
    binConf = c.conf;
  }
  tally.correct = c.allCorrect;
  return c.nonEmpty > 0 ? c.gapSum / c.nonEmpty : NaN;
}

/** w copies of one item that fill the current bin (and maybe more): close bins as they fill. */
function spill(c: BinCursor, w: number, isCorrect: number, conf: number, base: number, extra: number, nBins: number): void {
  while (w > 0 && c.b < nBins) {
    const take = w < c.need ? w : c.need;
    c.correct += take * isCorrect;
    c.conf += take * conf;
    c.need -= take;
    w -= take;
    if (c.need > 0) continue;
    c.gapSum += Math.abs(c.correct / c.count - c.conf / c.count);
    c.nonEmpty++;
    c.allCorrect += c.correct;
    c.correct = 0;
    c.conf = 0;
    c.count = c.need = base + (++c.b < extra ? 1 : 0);
    while (c.need === 0 && c.b < nBins) c.count = c.need = base + (++c.b < extra ? 1 : 0);
  }
}
