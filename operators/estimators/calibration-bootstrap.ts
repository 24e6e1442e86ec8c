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
 * and the counts are bytes, so they stay in L2 at n = 100k (about half the cost of the rank lookup
 * with 32-bit counts, when that was measured). Both passes are unrolled, eight draws and eight
 * items a turn, with the same arithmetic in the same order: at n = 100k one item a turn measured
 * 7.2 ns a draw (4.8 drawing, 2.4 the walk), unrolled 3.3 (2.1 + 1.2) — medians of 9–16 rounds
 * interleaved in one process, 2-core shared VM at load average 1–2 (other sessions' tests); under
 * heavier load both rise, old 8.7 against new 4.7 in one 21-round run. A count past 255 wraps; the
 * pass sums the counts, and a resample whose sum is not n (practically never: an item drawn 256
 * times in n draws) is drawn again from its saved generator state into 32-bit counts, so every
 * resample is exact.
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

/**
 * n draws of mulberry32 from state `a`, each adding one to the count of rank ⌊u·n⌋; the new state.
 * ⌊u·n⌋ is (u · (n/2³²)) | 0: n/2³² and u/2³² are exact (power-of-two scalings), so u·(n/2³²)
 * and Math.floor's (u/2³²)·n are one rounding of the same real u·n/2³², which is below n < 2³¹,
 * where |0 and Math.floor agree (a test pins it). Eight draws a turn: with one, V8's per-turn
 * cost (bounds, loop) weighed more than mulberry32's arithmetic, and eight independent mixes
 * keep the core busier than four (2.3 against 2.8 ns a draw, interleaved medians).
 */
function drawRanks(counts: Uint8Array | Uint32Array, n: number, a: number): number {
  const scale = n / 4294967296;
  let t = 0;
  for (; t + 7 < n; t += 8) {
    const a1 = (a + 0x6d2b79f5) | 0, a2 = (a1 + 0x6d2b79f5) | 0, a3 = (a2 + 0x6d2b79f5) | 0, a4 = (a3 + 0x6d2b79f5) | 0;
    const a5 = (a4 + 0x6d2b79f5) | 0, a6 = (a5 + 0x6d2b79f5) | 0, a7 = (a6 + 0x6d2b79f5) | 0, a8 = (a7 + 0x6d2b79f5) | 0;
    a = a8;
    let x1 = Math.imul(a1 ^ (a1 >>> 15), a1 | 1);
    x1 ^= x1 + Math.imul(x1 ^ (x1 >>> 7), x1 | 61);
    let x2 = Math.imul(a2 ^ (a2 >>> 15), a2 | 1);
    x2 ^= x2 + Math.imul(x2 ^ (x2 >>> 7), x2 | 61);
    let x3 = Math.imul(a3 ^ (a3 >>> 15), a3 | 1);
    x3 ^= x3 + Math.imul(x3 ^ (x3 >>> 7), x3 | 61);
    let x4 = Math.imul(a4 ^ (a4 >>> 15), a4 | 1);
    x4 ^= x4 + Math.imul(x4 ^ (x4 >>> 7), x4 | 61);
    let x5 = Math.imul(a5 ^ (a5 >>> 15), a5 | 1);
    x5 ^= x5 + Math.imul(x5 ^ (x5 >>> 7), x5 | 61);
    let x6 = Math.imul(a6 ^ (a6 >>> 15), a6 | 1);
    x6 ^= x6 + Math.imul(x6 ^ (x6 >>> 7), x6 | 61);
    let x7 = Math.imul(a7 ^ (a7 >>> 15), a7 | 1);
    x7 ^= x7 + Math.imul(x7 ^ (x7 >>> 7), x7 | 61);
    let x8 = Math.imul(a8 ^ (a8 >>> 15), a8 | 1);
    x8 ^= x8 + Math.imul(x8 ^ (x8 >>> 7), x8 | 61);
    counts[(((x1 ^ (x1 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x2 ^ (x2 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x3 ^ (x3 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x4 ^ (x4 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x5 ^ (x5 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x6 ^ (x6 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x7 ^ (x7 >>> 14)) >>> 0) * scale) | 0]++;
    counts[(((x8 ^ (x8 >>> 14)) >>> 0) * scale) | 0]++;
  }
  for (; t < n; t++) {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    counts[(((x ^ (x >>> 14)) >>> 0) * scale) | 0]++;
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
 * zero (one fill at the end). Eight items a turn: when their weights together do not fill the
 * bin, none of them does (weights are ≥ 0), so all eight take the common path — their products
 * added one by one in rank order, as one item a turn adds them — with one predictable branch;
 * otherwise they go one by one, spilling into the next bins.
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
  for (let i = 0; i < n; i += 8) {
    if (i + 7 < n) {
      const w0 = weight[i], w1 = weight[i + 1], w2 = weight[i + 2], w3 = weight[i + 3];
      const w4 = weight[i + 4], w5 = weight[i + 5], w6 = weight[i + 6], w7 = weight[i + 7];
      const sum = w0 + w1 + w2 + w3 + w4 + w5 + w6 + w7;
      if (sum < need) {
        need -= sum;
        drawn += sum;
        // Integers (exact in any order); the float sum goes one by one, in rank order: its order is
        // its value. `[i + 0]`, not `[i]`: with every index written i + k, V8 (Node 20) ran the walk
        // faster in each of six interleaved runs (order rotated, n = 100k): 1.17 ns an item against
        // 1.28–1.35 when the machine was quiet.
        binCorrect += w0 * correct[i + 0] + w1 * correct[i + 1] + w2 * correct[i + 2] + w3 * correct[i + 3];
        binCorrect += w4 * correct[i + 4] + w5 * correct[i + 5] + w6 * correct[i + 6] + w7 * correct[i + 7];
        binConf += w0 * conf[i + 0];
        binConf += w1 * conf[i + 1];
        binConf += w2 * conf[i + 2];
        binConf += w3 * conf[i + 3];
        binConf += w4 * conf[i + 4];
        binConf += w5 * conf[i + 5];
        binConf += w6 * conf[i + 6];
        binConf += w7 * conf[i + 7];
        continue;
      }
    }
    // One by one: a group that fills its bin, or the last, shorter group.
    for (let j = i, end = Math.min(i + 8, n); j < end; j++) {
      const w = weight[j];
      drawn += w;
      if (w < need) {
        need -= w;
        binCorrect += w * correct[j];
        binConf += w * conf[j];
        continue;
      }
      c.need = need;
      c.correct = binCorrect;
      c.conf = binConf;
      spill(c, w, correct[j], conf[j], base, extra, nBins);
      need = c.need;
      binCorrect = c.correct;
      binConf = c.conf;
    }
  }
  weight.fill(0);
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
