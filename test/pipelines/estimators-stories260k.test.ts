/**
 * The estimators inside a real run equal brute force on the same captured data: stories260K,
 * 96 BoolQ prompts. Exact correlation matrices (float64, in the test), full min/max scans for dead
 * neurons, sorted-array ACE from the predictions the run recorded.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

test('correlation, dead and calibration of a stories260K run equal brute force', async () => {
  const model = sharedPath('models/stories260K-onnx', 'estimators on stories260K');
  const data = sharedPath('datasets/boolq.csv', 'estimators on stories260K');
  if (!model || !data) return;
  const out = tempDir('ql-est-');
  const cfg = parsePipeline(
    `model: ${model}\ndataset:\n  path: ${data}\n  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"\n  limit: 96\nlayers: [0, 4]\nmeasure: [predictions, calibration, dead, correlation]\ndead: {lo: -0.05, hi: 0.05}\noutput: ${out}\n`,
    path.join(out, 'p.yaml'),
  );
  const rows = new Map<number, Float64Array[]>();
  await runPipeline(cfg, {
    quiet: true,
    report: false,
    log: () => undefined,
    onBatch: (r) => {
      for (const c of r.outputs[0].chunks) {
        const list = rows.get(c.layer) ?? [];
        for (let i = 0; i < c.rows; i++) list.push(Float64Array.from(c.values.subarray(i * c.width, (i + 1) * c.width)));
        rows.set(c.layer, list);
      }
    },
  });

  const corr = await duckdbQuery(`select layer, bin_lo, pairs::bigint as pairs from '${out}/correlation.parquet' order by layer, bin_lo nulls first`);
  const dead = await duckdbQuery(`select layer, dead_count, total, dead_ids from '${out}/dead.parquet' order by layer`);
  for (const layer of [0, 4]) {
    const X = rows.get(layer)!;
    const n = X.length, d = X[0].length;
    const mean = new Float64Array(d);
    for (const x of X) for (let j = 0; j < d; j++) mean[j] += x[j] / n;
    const sd = new Float64Array(d);
    for (const x of X) for (let j = 0; j < d; j++) sd[j] += (x[j] - mean[j]) ** 2;
    const bins = new Array(10).fill(0);
    let undef = 0, nearEdge = 0;
    for (let a = 0; a < d; a++)
      for (let b = a + 1; b < d; b++) {
        if (sd[a] === 0 || sd[b] === 0) { undef++; continue; }
        let s = 0;
        for (const x of X) s += (x[a] - mean[a]) * (x[b] - mean[b]);
        const r = Math.abs(s / Math.sqrt(sd[a] * sd[b]));
        if (Math.abs(r * 10 - Math.round(r * 10)) < 1e-5) nearEdge++; // float32 Gram: |r| good to ~1e-6
        bins[Math.min(9, Math.floor(r * 10))]++;
      }
    const got = corr.filter((r) => r.layer === layer);
    assert.is(Number(got.find((r) => r.bin_lo === null)?.pairs ?? 0), undef, `layer ${layer} undefined pairs`);
    const gotBins = got.filter((r) => r.bin_lo !== null).map((r) => Number(r.pairs));
    const diff = gotBins.reduce((acc, v, i) => acc + Math.abs(v - bins[i]), 0);
    assert.ok(diff <= 2 * nearEdge, `layer ${layer}: histogram ${gotBins} vs brute force ${bins} (${nearEdge} pairs within 1e-5 of an edge)`);

    // Dead: a full scan for neurons that never leave (-0.05, 0.05).
    const deadIds: number[] = [];
    for (let j = 0; j < d; j++) if (X.every((x) => x[j] > -0.05 && x[j] < 0.05)) deadIds.push(j);
    const row = dead.find((r) => r.layer === layer)!;
    assert.is(row.total, d);
    assert.is(row.dead_count, deadIds.length);
    assert.equal((row.dead_ids as { items: number[] }).items ?? row.dead_ids, deadIds);
  }

  // ACE, sorted-array brute force over the recorded predictions (ties by example_id).
  const preds = (await duckdbQuery(`select example_id, confidence, correct from '${out}/predictions.parquet'`)) as { example_id: number; confidence: number; correct: boolean }[];
  preds.sort((a, b) => a.confidence - b.confidence || a.example_id - b.example_id);
  const n = preds.length;
  let gap = 0, start = 0;
  for (let k = 0; k < 10; k++) {
    const size = Math.floor(n / 10) + (k < n % 10 ? 1 : 0);
    const bin = preds.slice(start, start + size);
    start += size;
    gap += Math.abs(bin.filter((p) => p.correct).length / size - bin.reduce((s, p) => s + p.confidence, 0) / size);
  }
  const summary = JSON.parse((await import('node:fs')).readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.ok(Math.abs(summary.precisions.fp32.ace - gap / 10) < 1e-12, `ACE ${summary.precisions.fp32.ace} vs ${gap / 10}`);
});

test.run();
