import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ColumnMoments } from '../../../operators/estimators/moments.ts';
import { MomentsRunner } from '../../../operators/estimators/moments-graph.ts';
import { rng, gaussian } from './synthetic.ts';

test('the ORT batch pass equals the JS pass and a brute-force scan', async () => {
  const r = rng(7);
  const w = 37;
  const js = new ColumnMoments(w);
  const ort = new ColumnMoments(w);
  const runner = new MomentsRunner();
  const all: number[][] = [];
  for (const rows of [5, 1, 64, 300]) {
    const x = new Float32Array(rows * w);
    for (let i = 0; i < x.length; i++) {
      const c = i % w;
      // planted: a constant column, a near-zero column, values exactly on the bounds, large offsets
      x[i] = c === 0 ? 3.25 : c === 1 ? gaussian(r) * 0.01 : c === 2 ? [-0.1, 0.1, 0.05][i % 3] : 1000 + gaussian(r) * (c % 5);
    }
    js.update(x, rows);
    await runner.update(ort, x, rows);
    for (let i = 0; i < rows; i++) all.push(Array.from(x.subarray(i * w, (i + 1) * w)));
  }
  await runner.release();
  assert.is(ort.count, all.length);
  const varJ = js.variance(), varO = ort.variance();
  for (let c = 0; c < w; c++) {
    const col = all.map((row) => row[c]);
    const mean = col.reduce((a, b) => a + b, 0) / col.length;
    const v = col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length;
    assert.ok(Math.abs(ort.mean[c] - mean) <= 1e-12 * Math.max(1, Math.abs(mean)), `mean ${c}`);
    assert.ok(Math.abs(varO[c] - v) <= 1e-9 * Math.max(v, 1e-300) || Math.abs(varO[c] - v) < 1e-18, `variance ${c}: ${varO[c]} vs ${v}`);
    assert.ok(Math.abs(varO[c] - varJ[c]) <= 1e-9 * Math.max(v, 1e-300) || Math.abs(varO[c] - varJ[c]) < 1e-18);
    assert.is(ort.min[c], Math.min(...col));
    assert.is(ort.max[c], Math.max(...col));
    const nz = col.filter((x) => x > -0.1 && x < 0.1).length;
    assert.is(ort.nearZero[c], nz, `near-zero ${c}`);
    assert.is(js.nearZero[c], nz);
  }
  assert.is(varO[0], 0);
});

test.run();
