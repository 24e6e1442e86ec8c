import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bootstrapAccuracyAce, bootstrapRange } from '../../../operators/estimators/calibration-bootstrap.ts';
import { PARALLEL_MIN_DRAWS, parallelBootstrapAccuracyAce, releaseBootstrapWorker, warmBootstrapWorker } from '../../../operators/estimators/calibration-bootstrap-parallel.ts';
import { calibrationOrder } from '../../../operators/estimators/calibration.ts';
import { mulberry32 } from '../../../core/random.ts';

interface Rec { conf: number; correct: number; id: number }

/** Float64 brute force of one resample: materialise it, sort it, cut it into equal-mass bins. */
function bruteResample(sample: Rec[], B: number): { accuracy: number; ace: number } {
  const s = [...sample].sort((a, b) => a.conf - b.conf || a.id - b.id);
  const n = s.length, base = Math.floor(n / B), extra = n % B;
  const gaps: number[] = [];
  for (let b = 0; b < B; b++) {
    const start = b * base + Math.min(b, extra);
    const part = s.slice(start, start + base + (b < extra ? 1 : 0));
    if (!part.length) continue;
    gaps.push(Math.abs(part.reduce((a, x) => a + x.correct, 0) / part.length - part.reduce((a, x) => a + x.conf, 0) / part.length));
  }
  return { accuracy: s.reduce((a, x) => a + x.correct, 0) / n, ace: gaps.reduce((a, g) => a + g, 0) / gaps.length };
}

/** The kernel's inputs, by calibration rank; and the records in that order by the test's own sort. */
function ranked(recs: Rec[]) {
  const order = calibrationOrder(Float64Array.from(recs, (r) => r.conf), Int32Array.from(recs, (r) => r.id));
  const byRank = [...recs].sort((a, b) => a.conf - b.conf || a.id - b.id);
  return { conf: Float64Array.from(order, (i) => recs[i].conf), correct: Uint8Array.from(order, (i) => recs[i].correct), byRank };
}

/** Resample s of the brute force: n draws of mulberry32, draw j picking the rank-⌊u·n⌋ record. */
function bruteDraws(byRank: Rec[], bins: number, resamples: number, seed: number): { accuracy: number; ace: number }[] {
  const rand = mulberry32(seed), n = byRank.length;
  return Array.from({ length: resamples }, () => bruteResample(Array.from({ length: n }, () => byRank[Math.floor(rand() * n)]), bins));
}

function records(n: number, seed: number, ties: boolean): Rec[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const conf = ties ? Math.round(r() * 4) / 4 : r();
    return { conf, correct: r() < conf ? 1 : 0, id: (i * 7919) % 10007 };
  });
}

// Every resample, not just the percentiles: the same draws as byRank[Math.floor(rand() * n)], and
// with n < bins and heavy ties one item's copies fill several bins (the kernel's slow path).
for (const [n, bins, ties] of [[1, 10, false], [4, 10, true], [10, 10, false], [37, 5, true], [500, 10, true], [1000, 7, false]] as const) {
  test(`each resample's accuracy and ACE equal a float64 brute force with the same draws (n=${n}, ${bins} bins${ties ? ', ties' : ''})`, () => {
    const recs = records(n, 100 + n, ties);
    const k = ranked(recs);
    const R = 40;
    const got = bootstrapAccuracyAce(k.conf, k.correct, bins, R, 9);
    const want = bruteDraws(k.byRank, bins, R, 9);
    for (let s = 0; s < R; s++) {
      assert.is(got.accuracy[s], want[s].accuracy, `resample ${s} accuracy`);
      assert.ok(Math.abs(got.ace[s] - want[s].ace) <= 1e-12, `resample ${s}: ace ${got.ace[s]} vs ${want[s].ace}`);
    }
  });
}

test('a large seed (≥ 2^31) follows mulberry32 exactly', () => {
  const k = ranked(records(50, 7, false));
  const seed = 0xfffffff0;
  const got = bootstrapAccuracyAce(k.conf, k.correct, 10, 5, seed);
  const want = bruteDraws(k.byRank, 10, 5, seed);
  for (let s = 0; s < 5; s++) assert.is(got.accuracy[s], want[s].accuracy);
});

// The kernel's earlier form, one item a turn (draws ⌊(u/2³²)·n⌋ by Math.floor, walk zeroing each
// count as it goes): the unrolled kernel must give the same bits, not just values within 1e-12.
function referenceBootstrap(conf: Float64Array, correct: Uint8Array, nBins: number, resamples: number, seed: number): { accuracy: number[]; ace: number[] } {
  const n = conf.length, counts = new Uint32Array(n), accuracy: number[] = [], ace: number[] = [];
  let a = seed | 0;
  for (let s = 0; s < resamples; s++) {
    for (let t = 0; t < n; t++) {
      a = (a + 0x6d2b79f5) | 0;
      let x = Math.imul(a ^ (a >>> 15), a | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      counts[Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n)]++;
    }
    const base = Math.floor(n / nBins), extra = n % nBins;
    let b = 0, count = base + (extra > 0 ? 1 : 0), need = count, binCorrect = 0, binConf = 0, gapSum = 0, nonEmpty = 0, allCorrect = 0;
    while (need === 0 && b < nBins) count = need = base + (++b < extra ? 1 : 0);
    for (let i = 0; i < n; i++) {
      let w = counts[i];
      counts[i] = 0;
      while (w > 0 && b < nBins) {
        const take = w < need ? w : need;
        binCorrect += take * correct[i];
        binConf += take * conf[i];
        need -= take;
        w -= take;
        if (need > 0) continue;
        gapSum += Math.abs(binCorrect / count - binConf / count);
        nonEmpty++;
        allCorrect += binCorrect;
        binCorrect = 0;
        binConf = 0;
        count = need = base + (++b < extra ? 1 : 0);
        while (need === 0 && b < nBins) count = need = base + (++b < extra ? 1 : 0);
      }
    }
    accuracy.push(allCorrect / n);
    ace.push(nonEmpty > 0 ? gapSum / nonEmpty : NaN);
  }
  return { accuracy, ace };
}

/**
 * records() draws confidences that are multiples of 2⁻³², whose weighted sums are exact in any
 * order; these use all 53 bits (ties: a few such values), so a changed summation order shows.
 */
function fullRecords(n: number, seed: number, ties: boolean): Rec[] {
  const r = mulberry32(seed);
  const levels = [Math.sqrt(0.1), Math.sqrt(0.5), 1 / 3, Math.PI / 4, Math.SQRT1_2 * 0.99];
  return Array.from({ length: n }, (_, i) => {
    const conf = ties ? levels[Math.floor(r() * levels.length)] : Math.sqrt(r()) * 0.999;
    return { conf, correct: r() < conf ? 1 : 0, id: (i * 7919) % 10007 };
  });
}

test('the draw index (u·(n/2³²))|0 equals Math.floor((u/2³²)·n) for every state tried', () => {
  const rand = mulberry32(12345);
  const us = [0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
  for (let k = 0; k < 20_000; k++) us.push(Math.floor(rand() * 4294967296));
  const ns = [1, 2, 3, 7, 10, 255, 256, 1000, 99_999, 100_000, 100_001, 1 << 20, (1 << 21) + 1, 123_456_789, 2 ** 30 + 3, 2 ** 31 - 1];
  for (const n of ns) {
    const scale = n / 4294967296;
    for (const u of us) {
      const want = Math.floor((u / 4294967296) * n), got = (u * scale) | 0;
      if (got !== want) assert.unreachable(`u=${u} n=${n}: ${got} vs ${want}`);
    }
  }
});

for (const [n, bins, ties, R] of [[1, 10, false, 20], [5, 10, true, 20], [8, 3, false, 20], [9, 1, true, 20], [17, 7, true, 30], [63, 13, false, 30], [1001, 10, true, 20], [4099, 10, false, 10], [100_000, 10, false, 3]] as const) {
  test(`each resample's accuracy and ACE are bit-identical to the one-item-a-turn kernel (n=${n}, ${bins} bins${ties ? ', ties' : ''})`, () => {
    const k = ranked(fullRecords(n, 300 + n, ties));
    const got = bootstrapAccuracyAce(k.conf, k.correct, bins, R, 0xdeadbeef);
    const want = referenceBootstrap(k.conf, k.correct, bins, R, 0xdeadbeef);
    for (let s = 0; s < R; s++) {
      assert.ok(Object.is(got.accuracy[s], want.accuracy[s]), `resample ${s} accuracy ${got.accuracy[s]} vs ${want.accuracy[s]}`);
      assert.ok(Object.is(got.ace[s], want.ace[s]), `resample ${s} ace ${got.ace[s]} vs ${want.ace[s]}`);
    }
  });
}

// A count past 255 wraps its byte; an item drawn 256 times is beyond reach of real draws, so
// counts pre-loaded with 255 stand in for it: the pass sees Σ counts ≠ n and draws again wide.
test('a wrapped count is caught and its resample drawn again exactly', () => {
  const k = ranked(records(300, 21, true));
  const counts = new Uint8Array(300);
  counts[0] = counts[150] = counts[299] = 255;
  const got = bootstrapAccuracyAce(k.conf, k.correct, 10, 6, 4, counts);
  const want = bruteDraws(k.byRank, 10, 6, 4);
  for (let s = 0; s < 6; s++) {
    assert.is(got.accuracy[s], want[s].accuracy, `resample ${s} accuracy`);
    assert.ok(Math.abs(got.ace[s] - want[s].ace) <= 1e-12, `resample ${s}: ace ${got.ace[s]} vs ${want[s].ace}`);
  }
  assert.ok(counts.every((c) => c === 0), 'scratch counts left zero');
});

test('resamples [from, to) alone equal those of one pass from resample 0 (the jumped generator state)', () => {
  const k = ranked(records(123, 5, false));
  const all = bootstrapAccuracyAce(k.conf, k.correct, 10, 20, 77);
  const acc = new Float64Array(20).fill(-1), ace = new Float64Array(20).fill(-1);
  bootstrapRange(k.conf, k.correct, 10, 77, 7, 13, acc, ace, new Uint8Array(123));
  for (let s = 0; s < 20; s++) {
    const inside = s >= 7 && s < 13;
    assert.is(acc[s], inside ? all.accuracy[s] : -1, `accuracy ${s}`);
    assert.is(ace[s], inside ? all.ace[s] : -1, `ace ${s}`);
  }
});

// The worker is eval'd source built from the kernel's functions: it must run here (tsx) and take
// a share, and its resamples must be bit-identical to one thread's, whatever the split.
for (const [n, R, seed] of [[1, 5, 0], [257, 33, 0xfffffff0], [2000, 100, 3]] as const) {
  test(`two threads give bit-identical resamples to one (n=${n}, ${R} resamples)`, () => {
    const k = ranked(records(n, 50 + n, n % 2 === 1));
    const one = bootstrapAccuracyAce(k.conf, k.correct, 10, R, seed);
    const two = parallelBootstrapAccuracyAce(k.conf, k.correct, 10, R, seed, { threads: 'always', awaitWorkerMs: 20_000 });
    assert.ok(two.workerResamples > 0, 'the worker computed some resamples');
    assert.equal(Array.from(two.accuracy), Array.from(one.accuracy));
    assert.equal(Array.from(two.ace), Array.from(one.ace));
    const never = parallelBootstrapAccuracyAce(k.conf, k.correct, 10, R, seed, { threads: 'never' });
    assert.is(never.workerResamples, 0);
    assert.equal(Array.from(never.ace), Array.from(one.ace));
  });
}

// A warmed worker (the end of a run starts it early) serves every bootstrap until released,
// one job after another, with the same values as one thread.
test('a warmed worker serves successive bootstraps, bit-identical to one thread', () => {
  warmBootstrapWorker(PARALLEL_MIN_DRAWS);
  try {
    for (const [n, R, seed] of [[300, 40, 1], [1000, 64, 9]] as const) {
      const k = ranked(records(n, 7 + n, false));
      const one = bootstrapAccuracyAce(k.conf, k.correct, 10, R, seed);
      const two = parallelBootstrapAccuracyAce(k.conf, k.correct, 10, R, seed, { threads: 'always', awaitWorkerMs: 20_000 });
      assert.ok(two.workerResamples > 0, `the warmed worker computed some of job n=${n}`);
      assert.equal(Array.from(two.accuracy), Array.from(one.accuracy));
      assert.equal(Array.from(two.ace), Array.from(one.ace));
    }
  } finally {
    releaseBootstrapWorker();
  }
});

test.run();
