import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AGGREGATIONS, salientNeurons, SalienceEstimator, type AttributionRecord } from '../../../operators/attribution/salience.ts';
import { rng } from '../../onnx/backward/fd-harness.ts';

/**
 * Brute force, written independently from the authors' rule: per neuron, loop over positions for
 * each aggregation; method 4 is the signed max over positions; normalisation |v| / max|v|
 * ('abs', the authors') or v / max|v| ('signed').
 */
function bruteForce(attr: Float32Array, P: number, Wd: number, thr: number, normalise: 'abs' | 'signed' = 'abs'): Record<string, number[]> {
  const rowSums = Array.from({ length: P }, (_, p) => Array.from({ length: Wd }, (_, n) => attr[p * Wd + n]).reduce((a, b) => a + b, 0));
  const best = rowSums.indexOf(Math.max(...rowSums));
  const vecs: Record<string, number[]> = {
    max_position: Array.from({ length: Wd }, (_, n) => attr[best * Wd + n]),
    sum_abs: Array.from({ length: Wd }, (_, n) => { let s = 0; for (let p = 0; p < P; p++) s += Math.abs(attr[p * Wd + n]); return s; }),
    max: Array.from({ length: Wd }, (_, n) => Math.max(...Array.from({ length: P }, (_, p) => attr[p * Wd + n]))),
  };
  vecs.mean_abs = vecs.sum_abs.map((v) => v / P);
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(vecs)) {
    const m = Math.max(...v.map(Math.abs));
    out[k] = v.flatMap((x, n) => (m > 0 && (normalise === 'abs' ? Math.abs(x) : x) / m > thr ? [n] : []));
  }
  return out;
}

function randomRecord(r: () => number, id: number, layer: number, precision: string, Wd: number): AttributionRecord {
  const P = 2 + Math.floor(r() * 6);
  // Heavy-tailed values so thresholds split neurons; some rows repeated (same "token" twice).
  const attributions = Float32Array.from({ length: P * Wd }, () => (r() - 0.4) * Math.exp(3 * r()));
  if (P > 3) attributions.copyWithin(Wd, 0, Wd);
  return { precision, layer, tensor: `mlp.${layer}`, exampleId: id, attributions, positions: P, width: Wd, completenessError: r() * 0.1, converged: r() > 0.3 };
}

test('four aggregations and the 0.7 rule, both normalisations, match a brute-force computation', () => {
  const r = rng(3);
  for (let t = 0; t < 200; t++) {
    const rec = randomRecord(r, t, 0, 'fp32', 9);
    for (const thr of [0.7, 0.3])
      for (const normalise of ['abs', 'signed'] as const) {
        const got = salientNeurons(rec.attributions, rec.positions, rec.width, thr, normalise);
        const want = bruteForce(rec.attributions, rec.positions, rec.width, thr, normalise);
        for (const a of AGGREGATIONS) assert.equal(got.byAggregation[a], want[a], `${a} ${normalise} trial ${t}`);
        assert.equal(got.union, [...new Set(Object.values(want).flat())].sort((a, b) => a - b));
      }
  }
  // Repeated positions both count: a neuron salient only through its max over positions.
  const attr = Float32Array.from([1, 0, 0, 0.9, 1, 0, 0.9, 0.1]);
  assert.equal(salientNeurons(attr, 4, 2, 0.7).byAggregation.max, [0, 1]);
  // Method 4 is the signed max: neuron 1 at [-3, 0.1] has max 0.1, not max |attr| = 3, so it
  // does not enter through method 4 (it would under max |attr|).
  const spike = Float32Array.from([1, -3, 0.9, 0.1]);
  assert.equal(salientNeurons(spike, 2, 2, 0.7).byAggregation.max, [0]);
  // Normalisation: neuron 1 strongly negative everywhere. 'abs' (the authors') counts it;
  // 'signed' (v / max|v|) never does under max_position or max.
  const neg = Float32Array.from([1, -2, 0.2, -1.9]);
  const abs = salientNeurons(neg, 2, 2, 0.7, 'abs');
  const signed = salientNeurons(neg, 2, 2, 0.7, 'signed');
  assert.equal([abs.byAggregation.max_position, abs.byAggregation.max], [[1], [1]]);
  assert.equal([signed.byAggregation.max_position, signed.byAggregation.max], [[], []]);
});

test('SalienceEstimator: counts, mean |attr| and completeness summary vs brute force; shard merge == single pass', () => {
  const r = rng(9);
  const records: AttributionRecord[] = [];
  for (let i = 0; i < 60; i++) records.push(randomRecord(r, i, i % 3 === 0 ? 2 : 4, i % 2 ? 'nf4' : 'fp32', 7));
  const single = new SalienceEstimator();
  records.forEach((x) => single.update(x));
  const shards = [new SalienceEstimator(), new SalienceEstimator(), new SalienceEstimator()];
  records.forEach((x, i) => shards[i % 3].update(x));
  const merged = new SalienceEstimator();
  for (const s of shards) merged.merge(JSON.parse(JSON.stringify(s.state())));
  const a = single.finish();
  const b = merged.finish();
  assert.is(a.rows.length, b.rows.length);
  a.rows.forEach((row, i) => {
    const o = b.rows[i];
    assert.equal([row.layer, row.precision, row.neuron, row.salient_examples], [o.layer, o.precision, o.neuron, o.salient_examples]);
    assert.is(row.tensor, `mlp.${row.layer}`);
    assert.ok(Math.abs(row.mean_abs_attr - o.mean_abs_attr) <= 1e-12 * Math.abs(row.mean_abs_attr));
  });
  assert.equal(a.layers, b.layers);
  // Brute force per (precision, layer).
  for (const L of a.layers) {
    const mine = records.filter((x) => x.precision === L.precision && x.layer === L.layer);
    const count = new Array(7).fill(0);
    const sumAbs = new Array(7).fill(0);
    let positions = 0;
    for (const x of mine) {
      for (const n of new Set(Object.values(bruteForce(x.attributions, x.positions, 7, 0.7)).flat())) count[n]++;
      for (let p = 0; p < x.positions; p++) for (let n = 0; n < 7; n++) sumAbs[n] += Math.abs(x.attributions[p * 7 + n]);
      positions += x.positions;
    }
    const rows = a.rows.filter((x) => x.precision === L.precision && x.layer === L.layer);
    assert.equal(rows.map((x) => x.salient_examples), count);
    rows.forEach((x, n) => assert.ok(Math.abs(x.mean_abs_attr - sumAbs[n] / positions) < 1e-12));
    assert.is(L.union_count, count.filter((c) => c > 0).length);
    assert.is(L.examples, mine.length);
    const errs = mine.map((x) => x.completenessError).sort((p, q) => p - q);
    assert.is(L.completeness.count, mine.length);
    assert.is(L.completeness.min, errs[0]);
    assert.is(L.completeness.max, errs[errs.length - 1]);
    assert.is(L.completeness.median, errs.length % 2 ? errs[(errs.length - 1) / 2] : (errs[errs.length / 2 - 1] + errs[errs.length / 2]) / 2);
    assert.is(L.completeness.p90, errs[Math.ceil(0.9 * errs.length) - 1]);
    assert.is(L.completeness.above_threshold, errs.filter((e) => e > 0.05).length);
    assert.equal(L.completeness.unconverged_example_ids, mine.filter((x) => !x.converged).map((x) => x.exampleId));
  }
});

test('merge refuses a different width or threshold', () => {
  const a = new SalienceEstimator();
  a.update(randomRecord(rng(1), 0, 0, 'fp32', 5));
  const b = new SalienceEstimator();
  b.update(randomRecord(rng(2), 1, 0, 'fp32', 6));
  assert.throws(() => a.merge(b.state()), /width/);
  assert.throws(() => a.merge(new SalienceEstimator({ threshold: 0.5 }).state()), /threshold/);
  assert.throws(() => a.merge(new SalienceEstimator({ normalise: 'signed' }).state()), /normalise/);
});

test.run();
