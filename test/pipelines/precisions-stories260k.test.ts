/**
 * End to end on the real model: stories260K at fp32 and four quantized precisions, every measure
 * of the estimators issue, 500 BoolQ prompts. Each quantized variant's logits are close to fp32
 * but not equal (mean KL reported), agreement.parquet's KL equals a direct computation from the
 * logits the run produced, and DuckDB reads every file.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

const PRECISIONS = ['fp32', 'llm-int8', 'nf4', 'q4', 'int8'];

function klDirect(p: Float32Array, q: Float32Array, off: number, V: number): number {
  let mp = -Infinity, mq = -Infinity;
  for (let v = 0; v < V; v++) { mp = Math.max(mp, p[off + v]); mq = Math.max(mq, q[off + v]); }
  let zp = 0, zq = 0;
  for (let v = 0; v < V; v++) { zp += Math.exp(p[off + v] - mp); zq += Math.exp(q[off + v] - mq); }
  let kl = 0;
  for (let v = 0; v < V; v++) {
    const lp = p[off + v] - mp - Math.log(zp);
    const lq = q[off + v] - mq - Math.log(zq);
    kl += Math.exp(lp) * (lp - lq);
  }
  return kl;
}

test('stories260K × BoolQ 500: fp32, llm-int8, nf4, q4, int8 with all measures', async () => {
  const model = sharedPath('models/stories260K-onnx', 'multi-precision end to end');
  const data = sharedPath('datasets/boolq.csv', 'multi-precision end to end');
  if (!model || !data) return;
  const out = tempDir('ql-prec-');
  const cfg = parsePipeline(
    [
      `model: ${model}`,
      `precisions: [${PRECISIONS.join(', ')}]`,
      'dataset:',
      `  path: ${data}`,
      '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
      '  limit: 500',
      'measure: [predictions, calibration, neurons, dead, correlation, agreement]',
      `output: ${out}`,
    ].join('\n'),
    path.join(out, 'p.yaml'),
  );
  const kls = new Map<string, number[]>(PRECISIONS.slice(1).map((p) => [p, []]));
  await runPipeline(cfg, {
    quiet: true,
    report: true,
    cacheDir: path.join(out, 'cache'),
    log: () => undefined,
    onBatch: (r) => {
      const ref = r.outputs[0].prediction;
      for (const o of r.outputs.slice(1))
        for (let e = 0; e < ref.exampleIds.length; e++) kls.get(o.precision)!.push(klDirect(ref.logits, o.prediction.logits, e * ref.vocab, ref.vocab));
    },
  });

  const agreement = await duckdbQuery(`select precision, metric, value from '${out}/agreement.parquet' where layer is null`);
  const metric = (p: string, m: string) => agreement.find((r) => r.precision === p && r.metric === m)?.value as number;
  const report: string[] = [];
  for (const p of PRECISIONS.slice(1)) {
    const direct = kls.get(p)!;
    const mean = direct.reduce((a, b) => a + b, 0) / direct.length;
    report.push(`${p}: mean KL(fp32‖${p}) = ${mean.toExponential(3)}, same top-1 ${(metric(p, 'top1_agreement') * 100).toFixed(1)}%`);
    assert.is(direct.length, 500);
    assert.ok(Math.abs(metric(p, 'kl_mean') - mean) <= 1e-9 * Math.max(1, mean), `${p} kl_mean ${metric(p, 'kl_mean')} vs ${mean}`);
    const sorted = [...direct].sort((a, b) => a - b);
    assert.ok(Math.abs(metric(p, 'kl_max') - sorted[499]) < 1e-12, `${p} kl_max`);
    // Close to fp32 but not equal.
    assert.ok(mean > 1e-6, `${p} differs from fp32`);
    assert.ok(mean < 1, `${p} stays close to fp32 (mean KL ${mean})`);
  }
  console.log(report.join('\n'));

  // Every output file is readable by DuckDB, with the expected shapes.
  const count = async (f: string, where = '') => Number((await duckdbQuery(`select count(*)::bigint as n from '${out}/${f}' ${where}`))[0].n);
  assert.is(await count('predictions.parquet'), 500 * 5);
  assert.is(await count('neurons.parquet'), 3 * 172 * 5);
  assert.is(await count('dead.parquet'), 3 * 5);
  assert.is(await count('calibration.parquet', "where scheme = 'equal-mass'"), 10 * 5);
  // Histogram: every pair i<j counted exactly once per layer and precision (incl. undefined).
  const pairs = await duckdbQuery(`select precision, layer, sum(pairs)::bigint as n from '${out}/correlation.parquet' group by all`);
  assert.is(pairs.length, 15);
  for (const r of pairs) assert.is(Number(r.n), (172 * 171) / 2);
  const sqnr = await duckdbQuery(`select count(*)::int as n from '${out}/agreement.parquet' where metric = 'sqnr_db' and value > 0`);
  assert.is(sqnr[0].n, 3 * 4);

  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.equal(Object.keys(summary.precisions), PRECISIONS);
  for (const p of PRECISIONS) for (const k of ['examples', 'accuracy', 'mean_confidence', 'ace', 'ece', 'mce']) assert.type(summary.precisions[p][k], 'number', `${p}.${k}`);
  assert.ok(readFileSync(path.join(out, 'report.html'), 'utf8').includes('nf4'));
});

test.run();
