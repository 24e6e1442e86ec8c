import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AgreementEstimator, jaccard, type AgreementRow } from '../../../operators/estimators/agreement.ts';
import type { ActivationChunk, PredictionBatch } from '../../../core/types.ts';
import { chunk, closeRel, gaussian, predictions, rng } from './synthetic.ts';

const V = 50;

/** 6 batches; q4 logits = ref + noise; int8 identical to ref on even examples. */
function makeBatches() {
  const r = rng(9);
  const out: { ref: PredictionBatch; qs: PredictionBatch[]; refCorrect: Uint8Array; qCorrect: Uint8Array[] }[] = [];
  let id = 0;
  for (let b = 0; b < 6; b++) {
    const n = 1 + Math.floor(r() * 9);
    const ids = Array.from({ length: n }, () => id++);
    const ref = new Float32Array(n * V).map(() => gaussian(r) * 3);
    const q4 = ref.map((x) => x + gaussian(r) * 0.8);
    const int8 = ref.map((x, k) => (Math.floor(k / V) % 2 === 0 ? x : x + gaussian(r) * 0.1));
    out.push({
      ref: { ...predictions('fp32', ids, ref, V), batchIndex: b },
      qs: [{ ...predictions('q4', ids, q4, V), batchIndex: b }, { ...predictions('int8', ids, int8, V), batchIndex: b }],
      refCorrect: Uint8Array.from(ids, () => (r() < 0.6 ? 1 : 0)),
      qCorrect: [Uint8Array.from(ids, () => (r() < 0.5 ? 1 : 0)), Uint8Array.from(ids, () => (r() < 0.6 ? 1 : 0))],
    });
  }
  return out;
}

function softmax(x: Float32Array, off: number) {
  const e = Array.from({ length: V }, (_, v) => Math.exp(x[off + v]));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function q7(xs: number[], q: number) {
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q, lo = Math.floor(h);
  return s[lo] + (h - lo) * (s[Math.min(lo + 1, s.length - 1)] - s[lo]);
}

function bruteOutputs(batches: ReturnType<typeof makeBatches>, qi: number) {
  const kls: number[] = [];
  let same = 0, dp = 0, c2w = 0, w2c = 0;
  for (const b of batches) {
    const q = b.qs[qi];
    for (let e = 0; e < b.ref.exampleIds.length; e++) {
      const p = softmax(b.ref.logits, e * V), qq = softmax(q.logits, e * V);
      kls.push(p.reduce((a, pv, v) => a + pv * Math.log(pv / qq[v]), 0));
      const top = p.indexOf(Math.max(...p)), topQ = qq.indexOf(Math.max(...qq));
      if (top === topQ) same++;
      dp += qq[top] - p[top];
      if (b.refCorrect[e] && !b.qCorrect[qi][e]) c2w++;
      if (!b.refCorrect[e] && b.qCorrect[qi][e]) w2c++;
    }
  }
  const n = kls.length;
  return {
    examples: n, kl_mean: kls.reduce((a, b) => a + b, 0) / n, kl_median: q7(kls, 0.5), kl_p90: q7(kls, 0.9), kl_p99: q7(kls, 0.99), kl_max: Math.max(...kls),
    top1_agreement: same / n, delta_p_mean: dp / n, flips_correct_to_wrong: c2w, flips_wrong_to_correct: w2c,
  } as Record<string, number>;
}

function value(rows: AgreementRow[], precision: string, layer: number | null, metric: string) {
  const r = rows.filter((x) => x.precision === precision && x.layer === layer && x.metric === metric);
  assert.is(r.length, 1, `one ${precision}/${layer}/${metric} row`);
  return r[0].value;
}

test('output-level KL, top-1, Δp and flips match the direct formulas; 4 shards merge', () => {
  const batches = makeBatches();
  const single = new AgreementEstimator('fp32');
  for (const b of batches) b.qs.forEach((q, qi) => single.update({ ref: b.ref, q, refCorrect: b.refCorrect, qCorrect: b.qCorrect[qi] }));
  const states = [0, 1, 2, 3].map((s) => {
    const e = new AgreementEstimator('fp32');
    batches.forEach((b, bi) => { if (bi % 4 === s) b.qs.forEach((q, qi) => e.updateOutputs(b.ref, q, b.refCorrect, b.qCorrect[qi])); });
    return JSON.parse(JSON.stringify(e.state()));
  });
  const merged = new AgreementEstimator('fp32');
  for (const s of states) merged.merge(s);
  for (const est of [single, merged]) {
    const rows = est.finish();
    assert.ok(rows.every((r) => r.reference === 'fp32' && r.layer === null));
    ['q4', 'int8'].forEach((p, qi) => {
      const bf = bruteOutputs(batches, qi);
      for (const [metric, v] of Object.entries(bf)) {
        const got = value(rows, p, null, metric);
        assert.ok(closeRel(got, v, 1e-9) || Math.abs(got - v) < 1e-12, `${p} ${metric}: ${got} vs ${v}`);
      }
    });
    assert.is(value(rows, 'int8', null, 'kl_median') >= 0, true);
  }
  // The merged estimator equals the single pass (KL quantiles exactly: same multiset).
  const a = single.finish(), b = merged.finish();
  a.forEach((r, i) => assert.ok(closeRel(r.value, b[i].value), `${r.metric} ${r.value} vs ${b[i].value}`));
});

test('identical logits give KL 0, top-1 1 and Δp 0; masked (−∞) logits are handled', () => {
  const logits = Float32Array.from([1, 2, -Infinity, 0.5, 3, 3, -Infinity, 1]);
  const e = new AgreementEstimator('fp32');
  e.updateOutputs(predictions('fp32', [0, 1], logits, 4), predictions('nf4', [0, 1], logits.slice(), 4));
  const rows = e.finish();
  assert.is(value(rows, 'nf4', null, 'kl_max'), 0);
  assert.is(value(rows, 'nf4', null, 'top1_agreement'), 1);
  assert.is(value(rows, 'nf4', null, 'delta_p_mean'), 0);
  assert.ok(!rows.some((r) => r.metric.startsWith('flips')), 'no flips without correct flags');
});

function actChunks(seed: number) {
  const r = rng(seed);
  const out: { ref: ActivationChunk; q: ActivationChunk }[] = [];
  for (let b = 0; b < 8; b++) {
    for (const layer of [0, 1]) {
      const rows = 1 + Math.floor(r() * 12), W = 24;
      const a = new Float32Array(rows * W).map(() => gaussian(r));
      if (b === 2) a.fill(0, 0, W); // an all-zero reference row: no cosine
      const q = a.map((x) => x + gaussian(r) * 0.05 * (layer + 1));
      out.push({ ref: chunk('fp32', layer, 'act', a, W, b), q: chunk('nf4', layer, 'act', q, W, b) });
    }
  }
  return out;
}

test('SQNR and mean cosine match the direct formulas; 4 shards merge', () => {
  const pairs = actChunks(4);
  const single = new AgreementEstimator('fp32');
  for (const p of pairs) single.update(p);
  const states = [0, 1, 2, 3].map((s) => {
    const e = new AgreementEstimator('fp32');
    for (const p of pairs) if (p.ref.batchIndex % 4 === s) e.updateActivations(p.ref, p.q);
    return JSON.parse(JSON.stringify(e.state()));
  });
  const merged = new AgreementEstimator('fp32');
  for (const s of states) merged.merge(s);
  for (const layer of [0, 1]) {
    let aa = 0, dd = 0, cos = 0, rowsDefined = 0, undef = 0;
    for (const { ref, q } of pairs) {
      if (ref.layer !== layer) continue;
      for (let r = 0; r < ref.rows; r++) {
        const a = [...ref.values.subarray(r * ref.width, (r + 1) * ref.width)], b = [...q.values.subarray(r * q.width, (r + 1) * q.width)];
        aa += a.reduce((s, x) => s + x * x, 0);
        dd += a.reduce((s, x, k) => s + (x - b[k]) ** 2, 0);
        const na = Math.hypot(...a), nb = Math.hypot(...b);
        if (na === 0 || nb === 0) { undef++; continue; }
        cos += a.reduce((s, x, k) => s + x * b[k], 0) / (na * nb);
        rowsDefined++;
      }
    }
    const sqnr = 20 * Math.log10(Math.sqrt(aa) / Math.sqrt(dd));
    for (const est of [single, merged]) {
      const rows = est.finish();
      assert.ok(closeRel(value(rows, 'nf4', layer, 'sqnr_db'), sqnr, 1e-9), `sqnr ${value(rows, 'nf4', layer, 'sqnr_db')} vs ${sqnr}`);
      assert.ok(closeRel(value(rows, 'nf4', layer, 'cosine_mean'), cos / rowsDefined, 1e-9));
      assert.is(value(rows, 'nf4', layer, 'cosine_undefined_rows'), undef);
    }
    assert.ok(layer === 1 || undef === 1);
  }
});

test('mismatched pairs are STATE errors', () => {
  const e = new AgreementEstimator('fp32');
  const p = actChunks(1)[0];
  assert.throws(() => e.updateActivations(p.q, p.ref), /reference side is nf4/);
  const other = { ...p.q, exampleId: p.q.exampleId.map((x) => x + 1) };
  assert.throws(() => e.updateActivations(p.ref, other), /row 0 is example/);
  const b = predictions('fp32', [1, 2], new Float32Array(2 * V), V);
  assert.throws(() => e.updateOutputs(b, predictions('q4', [2, 1], new Float32Array(2 * V), V)), /example ids/);
  assert.throws(() => e.merge({ reference: 'nf4', outputs: [], activations: [] }), /reference nf4/);
});

test('jaccard against a brute-force set computation', () => {
  const r = rng(2);
  for (let t = 0; t < 50; t++) {
    const a = Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * 30));
    const b = Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * 30));
    const union = new Set([...a, ...b]);
    const inter = [...new Set(a)].filter((x) => b.includes(x));
    const expected = union.size === 0 ? 1 : inter.length / union.size;
    assert.is(jaccard(a, new Set(b)), expected);
  }
  assert.is(jaccard([], []), 1);
});

test.run();
