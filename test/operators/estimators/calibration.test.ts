import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { calibrationOrder, calibrationSummary } from '../../../operators/estimators/calibration.ts';
import { mulberry32 } from '../../../core/random.ts';
import { rng } from './synthetic.ts';

interface Rec { conf: number; correct: number; id: number }

/** Records with ties in confidence, confidences of exactly 1.0 and 0, and edge values like 0.3. */
function makeRecords(n: number, seed: number): Rec[] {
  const r = rng(seed);
  const out: Rec[] = [];
  for (let i = 0; i < n; i++) {
    const u = r();
    let conf = u < 0.1 ? 1.0 : u < 0.2 ? Math.round(r() * 10) / 10 : u < 0.25 ? 0.5 : r();
    if (i === 3) conf = 0;
    // Overconfident model: correct with probability conf².
    out.push({ conf, correct: r() < conf * conf ? 1 : 0, id: (i * 7919) % 100003 });
  }
  return out;
}

function bruteACE(recs: Rec[], B = 10) {
  const s = [...recs].sort((a, b) => (a.conf !== b.conf ? a.conf - b.conf : a.id - b.id));
  const n = s.length, base = Math.floor(n / B), extra = n % B;
  const gaps: number[] = [];
  const bins: { count: number; acc: number; conf: number; lo: number; hi: number }[] = [];
  for (let b = 0; b < B; b++) {
    const start = b * base + Math.min(b, extra);
    const end = start + base + (b < extra ? 1 : 0);
    const part = s.slice(start, end);
    if (!part.length) { bins.push({ count: 0, acc: NaN, conf: NaN, lo: NaN, hi: NaN }); continue; }
    const acc = part.reduce((a, x) => a + x.correct, 0) / part.length;
    const conf = part.reduce((a, x) => a + x.conf, 0) / part.length;
    gaps.push(Math.abs(acc - conf));
    bins.push({ count: part.length, acc, conf, lo: part[0].conf, hi: part[part.length - 1].conf });
  }
  return { ace: gaps.reduce((a, b) => a + b, 0) / gaps.length, bins };
}

function bruteWidth(recs: Rec[], B = 10) {
  const bins = Array.from({ length: B }, () => [] as Rec[]);
  for (const x of recs) {
    let k = -1;
    for (let e = 0; e < B; e++) if (x.conf >= e / B && (x.conf < (e + 1) / B || e === B - 1)) k = e;
    bins[k].push(x);
  }
  let ece = 0, mce = 0;
  for (const b of bins) {
    if (!b.length) continue;
    const gap = Math.abs(b.reduce((a, x) => a + x.correct, 0) / b.length - b.reduce((a, x) => a + x.conf, 0) / b.length);
    ece += (gap * b.length) / recs.length;
    mce = Math.max(mce, gap);
  }
  return { ece, mce, counts: bins.map((b) => b.length) };
}

function quantile7(xs: number[], q: number) {
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q, lo = Math.floor(h);
  return s[lo] + (h - lo) * (s[Math.min(lo + 1, s.length - 1)] - s[lo]);
}

function run(recs: Rec[], opts = {}) {
  return calibrationSummary(Float64Array.from(recs, (x) => x.conf), Uint8Array.from(recs, (x) => x.correct), Int32Array.from(recs, (x) => x.id), opts);
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-12;

for (const n of [1, 7, 10, 13, 999]) {
  test(`ACE/ECE/MCE and bins match a sorted-array brute force (n=${n})`, () => {
    const recs = makeRecords(n, n);
    const res = run(recs, { resamples: 0 });
    const bm = bruteACE(recs), bw = bruteWidth(recs);
    assert.is(res.examples, n);
    assert.ok(close(res.ace, bm.ace), `ace ${res.ace} vs ${bm.ace}`);
    assert.ok(close(res.ece, bw.ece), `ece ${res.ece} vs ${bw.ece}`);
    assert.ok(close(res.mce, bw.mce), `mce ${res.mce} vs ${bw.mce}`);
    assert.ok(close(res.accuracy, recs.reduce((a, x) => a + x.correct, 0) / n));
    const mass = res.bins.filter((b) => b.scheme === 'equal-mass');
    const width = res.bins.filter((b) => b.scheme === 'equal-width');
    assert.is(mass.length, 10);
    assert.is(width.length, 10);
    mass.forEach((b, k) => {
      assert.is(b.count, bm.bins[k].count);
      if (b.count === 0) { assert.is(b.accuracy, null); return; }
      assert.ok(close(b.accuracy!, bm.bins[k].acc) && close(b.mean_confidence!, bm.bins[k].conf));
      assert.is(b.lo, bm.bins[k].lo);
      assert.is(b.hi, bm.bins[k].hi);
    });
    assert.equal(width.map((b) => b.count), bw.counts);
    assert.equal(width.map((b) => b.lo), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => k / 10));
  });
}

test('ties in confidence are broken by example_id, not input order', () => {
  const recs: Rec[] = Array.from({ length: 20 }, (_, i) => ({ conf: 0.7, correct: i % 3 === 0 ? 1 : 0, id: 100 - i }));
  const a = run(recs, { resamples: 0 });
  const b = run([...recs].reverse(), { resamples: 0 });
  assert.equal(a, b);
  assert.ok(close(a.ace, bruteACE(recs).ace));
});

/** The records in calibration order (confidence, then id): the bootstrap's draws pick ranks. */
const byRank = (recs: Rec[]) => [...recs].sort((a, b) => a.conf - b.conf || a.id - b.id);

test('bootstrap intervals equal a brute-force resampling with the same PRNG', () => {
  const recs = makeRecords(300, 5);
  const res = run(recs, { resamples: 200, seed: 42 });
  assert.is(res.ci.method, 'bootstrap-200-seed-42');
  const rand = mulberry32(42);
  const sorted = byRank(recs);
  const accs: number[] = [], aces: number[] = [];
  for (let s = 0; s < 200; s++) {
    const sample = Array.from({ length: recs.length }, () => sorted[Math.floor(rand() * recs.length)]);
    accs.push(sample.reduce((a, x) => a + x.correct, 0) / sample.length);
    aces.push(bruteACE(sample).ace);
  }
  assert.ok(close(res.ci.accuracy[0], quantile7(accs, 0.025)) && close(res.ci.accuracy[1], quantile7(accs, 0.975)), `${res.ci.accuracy} vs ${quantile7(accs, 0.025)}`);
  assert.ok(close(res.ci.ace[0], quantile7(aces, 0.025)) && close(res.ci.ace[1], quantile7(aces, 0.975)), `${res.ci.ace} vs ${quantile7(aces, 0.025)},${quantile7(aces, 0.975)}`);
  assert.ok(res.ci.accuracy[0] <= res.accuracy && res.accuracy <= res.ci.accuracy[1]);
  assert.ok(res.ace > 0.05, 'planted overconfidence is visible');
  // Default: 1000 resamples, seed 0, reproducible.
  const d1 = run(recs), d2 = run(recs);
  assert.is(d1.ci.method, 'bootstrap-1000-seed-0');
  assert.equal(d1.ci, d2.ci);
});

test('bootstrap ACE with fewer examples than bins, and counts not divisible by the bins, equals the brute force', () => {
  for (const n of [3, 7, 23]) {
    const recs = makeRecords(n, 11 + n);
    const res = run(recs, { resamples: 50, seed: 3 });
    const rand = mulberry32(3);
    const sorted = byRank(recs);
    const aces: number[] = [];
    for (let s = 0; s < 50; s++) aces.push(bruteACE(Array.from({ length: n }, () => sorted[Math.floor(rand() * n)])).ace);
    assert.ok(close(res.ci.ace[0], quantile7(aces, 0.025)) && close(res.ci.ace[1], quantile7(aces, 0.975)), `n ${n}: ${res.ci.ace} vs ${quantile7(aces, 0.025)},${quantile7(aces, 0.975)}`);
  }
});

/** The order by the comparator, with the input index as the last tie-break (what a stable sort keeps). */
function comparatorOrder(conf: Float64Array, id: Int32Array): number[] {
  return Array.from({ length: conf.length }, (_, i) => i).sort((a, b) => conf[a] - conf[b] || id[a] - id[b] || a - b);
}

// calibrationOrder radix-sorts confidences in [0, 1]: the same permutation as the comparator, with
// ties, equal (confidence, id) pairs, −0 beside +0, 0, 1, subnormals, and negative and extreme ids.
for (const [n, levels, idRange] of [[0, 0, 1], [1, 0, 1], [2, 2, 1], [3, 0, 2], [17, 3, 4], [1000, 0, 1e9], [1000, 5, 50], [5000, 40, 3000], [70_000, 0, 70_000], [70_000, 7, 2 ** 31]] as const) {
  test(`calibrationOrder equals the comparator sort (n=${n}, ${levels || 'full-mantissa'} levels, ids < ${idRange})`, () => {
    const r = mulberry32(n + levels);
    const special = [0, -0, 1, 5e-324, 2.2250738585072014e-308, 1 - 2 ** -53, 0.5, 0.1 + 0.2 - 0.2];
    const conf = new Float64Array(n), id = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const u = r();
      conf[i] = u < 0.05 ? special[Math.floor(r() * special.length)] : levels ? Math.floor(r() * levels) / levels : Math.sqrt(r());
      id[i] = i % 97 === 5 ? (r() < 0.5 ? -2147483648 : 2147483647) : Math.floor(r() * idRange) - (idRange > 100 ? Math.floor(idRange / 3) : 0);
    }
    assert.equal(Array.from(calibrationOrder(conf, id)), comparatorOrder(conf, id));
  });
}

test('calibrationOrder outside [0, 1] (the comparator sort) still orders by confidence, then id', () => {
  const conf = Float64Array.from([0.5, -0.25, 2, 0.5, 0.1]), id = Int32Array.from([3, 1, 0, 2, 9]);
  assert.equal(Array.from(calibrationOrder(conf, id)), [1, 4, 3, 0, 2]);
});

test('bad inputs are rejected', () => {
  assert.throws(() => calibrationSummary(Float64Array.from([1.5]), Uint8Array.from([1]), Int32Array.from([0])), /outside \[0, 1\]/);
  assert.throws(() => calibrationSummary(Float64Array.from([NaN]), Uint8Array.from([1]), Int32Array.from([0])), /outside/);
  assert.throws(() => calibrationSummary(Float64Array.from([0.5]), Uint8Array.from([1, 0]), Int32Array.from([0])), /correct flags/);
});

test.run();
