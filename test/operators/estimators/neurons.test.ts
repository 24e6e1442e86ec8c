import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NeuronsEstimator, type NeuronRow } from '../../../operators/estimators/neurons.ts';
import type { ActivationChunk } from '../../../core/types.ts';
import { chunk, closeRel, gaussian, rng } from './synthetic.ts';

const W = 5;
const PRECISIONS = ['fp32', 'int8'];
const LAYERS = [0, 3];

/** 12 batches per (precision, layer); neuron 0 dead at int8, neuron 1 constant. */
function makeChunks(): ActivationChunk[] {
  const r = rng(7);
  const out: ActivationChunk[] = [];
  for (let b = 0; b < 12; b++) {
    for (const p of PRECISIONS) {
      for (const layer of LAYERS) {
        const rows = 1 + Math.floor(r() * 40);
        const v = new Float32Array(rows * W);
        for (let i = 0; i < rows; i++) {
          v[i * W] = p === 'int8' ? (r() - 0.5) * 0.15 : gaussian(r);
          v[i * W + 1] = -2;
          for (let c = 2; c < W; c++) v[i * W + c] = gaussian(r) * (layer + 1) + c;
        }
        out.push(chunk(p, layer, 'mlp.act', v, W, b));
      }
    }
  }
  return out;
}

function bruteRows(chunks: ActivationChunk[]): Map<string, NeuronRow> {
  const vals = new Map<string, number[]>();
  for (const ch of chunks) {
    for (let c = 0; c < W; c++) {
      const k = `${ch.precision}/${ch.layer}/${c}`;
      const arr = vals.get(k) ?? [];
      for (let i = 0; i < ch.rows; i++) arr.push(ch.values[i * W + c]);
      vals.set(k, arr);
    }
  }
  const out = new Map<string, NeuronRow>();
  for (const [k, xs] of vals) {
    const [precision, layer, neuron] = k.split('/');
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
    out.set(k, {
      layer: Number(layer), tensor: 'mlp.act', neuron: Number(neuron), precision, count: xs.length, mean, variance,
      min: Math.min(...xs), max: Math.max(...xs), near_zero_fraction: xs.filter((x) => x > -0.1 && x < 0.1).length / xs.length,
    });
  }
  return out;
}

function checkRows(rows: NeuronRow[], brute: Map<string, NeuronRow>) {
  assert.is(rows.length, brute.size);
  for (const row of rows) {
    const b = brute.get(`${row.precision}/${row.layer}/${row.neuron}`)!;
    assert.ok(b, 'row key exists in brute force');
    assert.is(row.count, b.count);
    assert.is(row.min, b.min);
    assert.is(row.max, b.max);
    assert.is(row.near_zero_fraction, b.near_zero_fraction);
    assert.is(row.tensor, 'mlp.act');
    assert.ok(closeRel(row.mean, b.mean, 1e-9), `mean ${row.mean} vs ${b.mean}`);
    assert.ok(closeRel(row.variance, b.variance, 1e-9) || (b.variance === 0 && row.variance === 0), `variance ${row.variance} vs ${b.variance}`);
  }
}

test('finish rows match brute force per (precision, layer, neuron)', () => {
  const chunks = makeChunks();
  const est = new NeuronsEstimator();
  for (const c of chunks) est.update(c);
  const rows = est.finish();
  checkRows(rows, bruteRows(chunks));
  // Stable order: precision, layer, neuron.
  assert.equal(rows.slice(0, 2).map((r) => [r.precision, r.layer, r.neuron]), [['fp32', 0, 0], ['fp32', 0, 1]]);
  assert.ok(rows.every((r) => Number.isInteger(r.layer)));
});

test('4 shards merged through JSON equal one pass (counts identical, stats 1e-9)', () => {
  const chunks = makeChunks();
  const single = new NeuronsEstimator();
  for (const c of chunks) single.update(c);
  const states = [0, 1, 2, 3].map((s) => {
    const e = new NeuronsEstimator();
    for (const c of chunks) if (c.batchIndex % 4 === s) e.update(c);
    return JSON.parse(JSON.stringify(e.state()));
  });
  const merged = new NeuronsEstimator();
  for (const s of states) merged.merge(s);
  const a = single.finish();
  const b = merged.finish();
  assert.is(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.is(b[i].count, a[i].count);
    assert.is(b[i].min, a[i].min);
    assert.is(b[i].max, a[i].max);
    assert.is(b[i].near_zero_fraction, a[i].near_zero_fraction);
    assert.ok(closeRel(b[i].mean, a[i].mean));
    assert.ok(closeRel(b[i].variance, a[i].variance));
  }
  checkRows(b, bruteRows(chunks));
});

test('a width change for the same key is a STATE error', () => {
  const est = new NeuronsEstimator();
  est.update(chunk('fp32', 0, 't', new Float32Array(4), 2));
  assert.throws(() => est.update(chunk('fp32', 0, 't', new Float32Array(6), 3)), /changed width/);
});

test.run();
