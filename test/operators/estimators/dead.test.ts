import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeadNeuronsEstimator, deadNeuronsFrom } from '../../../operators/estimators/dead.ts';
import { NeuronsEstimator } from '../../../operators/estimators/neurons.ts';
import type { ActivationChunk } from '../../../core/types.ts';
import { chunk, gaussian, rng } from './synthetic.ts';

const W = 16;

/** Plants dead neurons: per precision a set of columns stays inside (-0.1, 0.1); one column touches exactly 0.1 once. */
function makeChunks(): { chunks: ActivationChunk[]; planted: Record<string, number[]> } {
  const r = rng(3);
  const planted: Record<string, number[]> = { fp32: [2, 9], nf4: [2, 5, 11, 15] };
  const chunks: ActivationChunk[] = [];
  for (let b = 0; b < 8; b++) {
    for (const p of Object.keys(planted)) {
      const rows = 3 + Math.floor(r() * 20);
      const v = new Float32Array(rows * W);
      for (let i = 0; i < rows; i++) {
        for (let c = 0; c < W; c++) v[i * W + c] = planted[p].includes(c) ? (r() - 0.5) * 0.199 : gaussian(r);
        v[i * W + 7] = 0.05; // near zero everywhere ...
      }
      if (b === 5) v[7] = 0.1; // ... except one activation on the bound: float32(0.1) > 0.1, so column 7 is not dead
      chunks.push(chunk(p, 1, 'act', v, W, b));
    }
  }
  return { chunks, planted };
}

function bruteDead(chunks: ActivationChunk[], precision: string): { dead: number[]; frac: number[] } {
  const dead: number[] = [];
  const frac: number[] = [];
  for (let c = 0; c < W; c++) {
    let all = true, nz = 0, n = 0;
    for (const ch of chunks) {
      if (ch.precision !== precision) continue;
      for (let i = 0; i < ch.rows; i++) {
        const x = ch.values[i * W + c];
        n++;
        if (x > -0.1 && x < 0.1) nz++; else all = false;
      }
    }
    if (all) dead.push(c);
    frac.push(nz / n);
  }
  return { dead, frac };
}

test('dead ids and near-zero fractions match brute force, merged from 4 JSON shards', () => {
  const { chunks } = makeChunks();
  const states = [0, 1, 2, 3].map((s) => {
    const e = new DeadNeuronsEstimator();
    for (const c of chunks) if (c.batchIndex % 4 === s) e.update(c);
    return JSON.parse(JSON.stringify(e.state()));
  });
  const merged = new DeadNeuronsEstimator();
  for (const s of states) merged.merge(s);
  const single = new DeadNeuronsEstimator();
  for (const c of chunks) single.update(c);
  for (const est of [merged, single]) {
    const res = est.finish();
    assert.equal(res.rows.map((r) => r.precision), ['fp32', 'nf4']);
    for (const row of res.rows) {
      const bf = bruteDead(chunks, row.precision);
      assert.equal(row.dead_ids, bf.dead);
      assert.is(row.dead_count, bf.dead.length);
      assert.is(row.total, W);
      assert.is(row.layer, 1);
      const nz = res.nearZero.filter((n) => n.precision === row.precision).map((n) => n.near_zero_fraction);
      assert.equal(nz, bf.frac);
    }
  }
  // The planted structure is visible (guards against a brute force that agrees with a broken estimator).
  const rows = single.finish().rows;
  assert.ok(rows[1].dead_ids.includes(11) && rows[1].dead_ids.includes(15));
  assert.ok(!rows[0].dead_ids.includes(7) && !rows[1].dead_ids.includes(7));
});

test('deadNeuronsFrom shares a NeuronsEstimator state', () => {
  const { chunks } = makeChunks();
  const neurons = new NeuronsEstimator();
  const dead = new DeadNeuronsEstimator();
  for (const c of chunks) { neurons.update(c); dead.update(c); }
  assert.equal(deadNeuronsFrom(neurons.byKey), dead.finish());
});

test('custom bounds', () => {
  const e = new DeadNeuronsEstimator({ bounds: { lo: -1, hi: 1 } });
  e.update(chunk('fp32', 0, 'act', Float32Array.from([0.5, 2, -0.9, 0]), 2));
  assert.equal(e.finish().rows[0].dead_ids, [0]);
});

test.run();
