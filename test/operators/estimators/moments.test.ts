import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ColumnMoments } from '../../../operators/estimators/moments.ts';
import { closeRel, gaussian, rng } from './synthetic.ts';

const W = 7;

/** Data with planted structure: column 0 dead (inside (-0.1,0.1)), column 1 constant, column 2 offset by 1e4. */
function makeData(rows: number, seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(rows * W);
  for (let i = 0; i < rows; i++) {
    v[i * W + 0] = (r() - 0.5) * 0.19;
    v[i * W + 1] = 0.3;
    v[i * W + 2] = 1e4 + gaussian(r);
    v[i * W + 3] = r() < 0.5 ? 0.1 : -0.1; // exactly on the (exclusive) bounds: never near zero... as float32
    for (let c = 4; c < W; c++) v[i * W + c] = gaussian(r) * c;
  }
  return v;
}

function bruteForce(v: Float32Array, rows: number, lo = -0.1, hi = 0.1) {
  const out = [];
  for (let c = 0; c < W; c++) {
    let s = 0, mn = Infinity, mx = -Infinity, nz = 0;
    for (let i = 0; i < rows; i++) { const x = v[i * W + c]; s += x; mn = Math.min(mn, x); mx = Math.max(mx, x); if (x > lo && x < hi) nz++; }
    const mean = s / rows;
    let ss = 0;
    for (let i = 0; i < rows; i++) ss += (v[i * W + c] - mean) ** 2;
    out.push({ mean, variance: ss / rows, min: mn, max: mx, nz });
  }
  return out;
}

test('single pass over uneven batches matches a two-pass brute force', () => {
  const rows = 1003;
  const v = makeData(rows, 1);
  const m = new ColumnMoments(W);
  let r0 = 0;
  for (const size of [1, 100, 2, 400, 500]) {
    m.update(v.subarray(r0 * W, (r0 + size) * W));
    r0 += size;
  }
  assert.is(r0, rows);
  const bf = bruteForce(v, rows);
  const variance = m.variance();
  assert.is(m.count, rows);
  for (let c = 0; c < W; c++) {
    assert.ok(closeRel(m.mean[c], bf[c].mean, 1e-12), `mean ${c}: ${m.mean[c]} vs ${bf[c].mean}`);
    assert.ok(closeRel(variance[c], bf[c].variance, 1e-9) || Math.abs(variance[c] - bf[c].variance) < 1e-18, `var ${c}: ${variance[c]} vs ${bf[c].variance}`);
    assert.is(m.min[c], bf[c].min);
    assert.is(m.max[c], bf[c].max);
    assert.is(m.nearZero[c], bf[c].nz);
  }
  assert.is(variance[1], 0, 'constant column has exactly zero variance');
  assert.is(m.nearZero[0], rows, 'dead column is near zero everywhere');
});

test('merging 4 shard states through JSON equals one pass', () => {
  const rows = 2000;
  const v = makeData(rows, 2);
  const single = new ColumnMoments(W);
  const bounds = [0, 3, 700, 1500, rows];
  const shards = [];
  for (let s = 0; s < 4; s++) {
    const part = new ColumnMoments(W);
    for (let r = bounds[s]; r < bounds[s + 1]; r += 128) {
      const end = Math.min(r + 128, bounds[s + 1]);
      part.update(v.subarray(r * W, end * W));
      single.update(v.subarray(r * W, end * W));
    }
    shards.push(JSON.parse(JSON.stringify(part.state())));
  }
  const merged = new ColumnMoments(W);
  for (const s of shards) merged.merge(s);
  assert.is(merged.count, single.count);
  for (let c = 0; c < W; c++) {
    assert.ok(closeRel(merged.mean[c], single.mean[c]), `mean ${c}`);
    assert.ok(closeRel(merged.m2[c], single.m2[c]) , `m2 ${c}: ${merged.m2[c]} vs ${single.m2[c]}`);
    assert.is(merged.min[c], single.min[c]);
    assert.is(merged.max[c], single.max[c]);
    assert.is(merged.nearZero[c], single.nearZero[c]);
  }
  const bf = bruteForce(v, rows);
  for (let c = 0; c < W; c++) assert.ok(closeRel(merged.m2[c] / rows, bf[c].variance, 1e-9) || bf[c].variance === 0);
});

test('custom near-zero bounds, empty update, bad shapes', () => {
  const m = new ColumnMoments(2, { lo: 0, hi: 1 });
  m.update(new Float32Array(0));
  assert.is(m.count, 0);
  m.update(Float32Array.from([0, 0.5, 1, 0.25]));
  assert.equal([...m.nearZero], [0, 2]);
  assert.throws(() => m.update(new Float32Array(3)), /rows\*width/);
  const other = new ColumnMoments(2);
  assert.throws(() => m.merge(other.state()), /bounds differ/);
  assert.throws(() => m.merge(new ColumnMoments(3, { lo: 0, hi: 1 }).state()), /width/);
});

test.run();
