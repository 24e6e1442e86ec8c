/**
 * The percentile bootstrap behind calibration's 95% intervals of accuracy and ACE: resample the n
 * examples with replacement `resamples` times, each resample's accuracy and ACE, then the
 * 2.5th/97.5th percentiles (operators/estimators/calibration.ts).
 *
 * It runs resamples × n draws, so it is what the end of a large run costs. One resample is two
 * allocation-free passes over typed arrays: n draws of mulberry32 (core/random.ts, inlined here;
 * the same stream as `rand()`), draw j picking the item of calibration rank Math.floor(rand() * n)
 * — the examples in calibration order, as `byRank[Math.floor(rand() * n)]` would — and counting
 * its multiplicity; then one sequential pass that fills the equal-mass bins from those counts and
 * zeroes them for the next resample. Accuracy comes out of the same pass (the bins hold every
 * draw), so the multiplicities are drawn once and shared by both statistics.
 *
 * Drawing ranks rather than input items (then looking up their rank) saves a random read a draw,
 * and the counts are bytes, so they stay in L2 at n = 100k: about 4 ns a draw against 9 with
 * the rank lookup and 32-bit counts. A count past 255 wraps; the pass sums the counts, and a
 * resample whose sum is not n (practically never: an item drawn 256 times in n draws) is drawn
 * again from its saved generator state into 32-bit counts, so every resample is exact.
 */

/** Per-resample statistics, in resample order (not sorted). */
export interface BootstrapDraws {
  accuracy: Float64Array;
  ace: Float64Array;
}

/**
 * `conf` and `correct` in calibration order (by rank). `counts` is scratch for the multiplicities
 * (all zero on return); a test passes it pre-loaded to exercise the wrap fallback.
 */
export function bootstrapAccuracyAce(conf: Float64Array, correct: Uint8Array, massBins: number, resamples: number, seed: number, counts = new Uint8Array(conf.length)): BootstrapDraws {
  const accuracy = new Float64Array(resamples), ace = new Float64Array(resamples);
  bootstrapRange(conf, correct, massBins, seed, 0, resamples, accuracy, ace, counts);
  return { accuracy, ace };
}

/**
 * Resamples [from, to) of the bootstrap with `seed` into accuracy[s] and ace[s], the same values
 * as one pass from resample 0 (so the resamples can be split across threads:
 * calibration-bootstrap-parallel.ts). mulberry32's state only adds 0x6D2B79F5 a draw, so resample `from` starts at
 * seed + from·n·0x6D2B79F5 (mod 2³²) without drawing the ones before it.
 */
export function bootstrapRange(conf: Float64Array, correct: Uint8Array, massBins: number, seed: number, from: number, to: number, accuracy: Float64Array, ace: Float64Array, counts: Uint8Array): void {
  const n = conf.length;
  const tally = { correct: 0, drawn: 0 };
  let wide: Uint32Array | null = null;
  let a = ((seed >>> 0) + Math.imul(Math.imul(from, n), 0x6d2b79f5)) | 0; // mulberry32's state
  for (let s = from; s < to; s++) {
    const start = a;
    a = drawRanks(counts, n, a);
    ace[s] = resampledAce(conf, correct, counts, massBins, tally);
    if (tally.drawn !== n) {
      wide ??= new Uint32Array(n);
      drawRanks(wide, n, start);
      ace[s] = resampledAce(conf, correct, wide, massBins, tally);
    }
    accuracy[s] = tally.correct / n;
  }
}

/** n draws of mulberry32 from state `a`, each adding one to the count of rank ⌊u·n⌋; the new state. */
function drawRanks(counts: Uint8Array | Uint32Array, n: number, a: number): number {
  for (let t = 0; t < n; t++) {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    counts[Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n)]++;
  }
  return a;
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
 * resample's correct count goes to tally.correct and Σ weight to tally.drawn (not n when a count
 * wrapped; then the bins are wrong and the caller draws the resample again). Leaves weight all
 * zero. The common case — an item that does not fill its bin, weight 0 included — is one
 * predictable branch.
 */
function resampledAce(conf: Float64Array, correct: Uint8Array, weight: Uint8Array | Uint32Array, nBins: number, tally: { correct: number; drawn: number }): number {
  const n = conf.length;
  const base = Math.floor(n / nBins);
  const extra = n % nBins;
  const c: BinCursor = { b: 0, count: 0, need: 0, correct: 0, conf: 0, gapSum: 0, nonEmpty: 0, allCorrect: 0 };
  c.count = c.need = base + (extra > 0 ? 1 : 0);
  // Bins that take no items (fewer items than bins) close at once.
  while (c.need === 0 && c.b < nBins) c.count = c.need = base + (++c.b < extra ? 1 : 0);
  let need = c.need, binCorrect = 0, binConf = 0, drawn = 0;
  for (let i = 0; i < n; i++) {
    const w = weight[i];
    weight[i] = 0;
    drawn += w;
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
  tally.drawn = drawn;
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

/**
 * The kernel as self-contained JavaScript source (its functions, which reference nothing else),
 * for the worker of calibration-bootstrap-parallel.ts: an eval'd worker needs no file path, so it
 * starts the same from the TypeScript sources under tsx and from dist/.
 */
export function bootstrapKernelSource(): string {
  return [drawRanks, resampledAce, spill, bootstrapRange].map(String).join('\n');
}
