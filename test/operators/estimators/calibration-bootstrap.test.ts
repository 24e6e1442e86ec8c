import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bootstrapAccuracyAce } from '../../../operators/estimators/calibration-bootstrap.ts';
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

/** The kernel's inputs: records by calibration rank, and each input item's rank. */
function ranked(recs: Rec[]) {
  const order = calibrationOrder(Float64Array.from(recs, (r) => r.conf), Int32Array.from(recs, (r) => r.id));
  const rank = new Uint32Array(recs.length);
  order.forEach((i, r) => (rank[i] = r));
  return { conf: Float64Array.from(order, (i) => recs[i].conf), correct: Uint8Array.from(order, (i) => recs[i].correct), rank };
}

function records(n: number, seed: number, ties: boolean): Rec[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const conf = ties ? Math.round(r() * 4) / 4 : r();
    return { conf, correct: r() < conf ? 1 : 0, id: (i * 7919) % 10007 };
  });
}

// Every resample, not just the percentiles: the same draws as recs[Math.floor(rand() * n)], and
// with n < bins and heavy ties one item's copies fill several bins (the kernel's slow path).
for (const [n, bins, ties] of [[1, 10, false], [4, 10, true], [10, 10, false], [37, 5, true], [500, 10, true], [1000, 7, false]] as const) {
  test(`each resample's accuracy and ACE equal a float64 brute force with the same draws (n=${n}, ${bins} bins${ties ? ', ties' : ''})`, () => {
    const recs = records(n, 100 + n, ties);
    const k = ranked(recs);
    const R = 40;
    const got = bootstrapAccuracyAce(k.conf, k.correct, k.rank, bins, R, 9);
    const rand = mulberry32(9);
    for (let s = 0; s < R; s++) {
      const want = bruteResample(Array.from({ length: n }, () => recs[Math.floor(rand() * n)]), bins);
      assert.is(got.accuracy[s], want.accuracy, `resample ${s} accuracy`);
      assert.ok(Math.abs(got.ace[s] - want.ace) <= 1e-12, `resample ${s}: ace ${got.ace[s]} vs ${want.ace}`);
    }
  });
}

test('a large seed (≥ 2^31) follows mulberry32 exactly', () => {
  const recs = records(50, 7, false);
  const k = ranked(recs);
  const seed = 0xfffffff0;
  const got = bootstrapAccuracyAce(k.conf, k.correct, k.rank, 10, 5, seed);
  const rand = mulberry32(seed);
  for (let s = 0; s < 5; s++) assert.is(got.accuracy[s], bruteResample(Array.from({ length: 50 }, () => recs[Math.floor(rand() * 50)]), 10).accuracy);
});

test.run();
