/**
 * The seconds of every pass in summary.json (inference, loglik, attribution), loglik mode without
 * the unread prompt pass, and salience in a run with cached attribution graphs and examples
 * grouped by length: on the demo model (no ../shared needed).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

async function run(dir: string, name: string, extra: string, cacheDir = path.join(dir, 'cache')) {
  const out = path.join(dir, name);
  const cfg = parsePipeline(`model: demo\ndataset:\n  path: demo\n  limit: 12\noutput: ${out}\n${extra}`, path.join(dir, `${name}.yaml`));
  await runPipeline(cfg, { quiet: true, report: false, cacheDir, log: () => undefined });
  return { out, summary: JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) };
}

const LOGLIK = 'scoring: {mode: loglik, choices: [" True", " False"]}\n';

test('loglik with predictions only: no prompt pass (inference 0 s), loglik seconds reported, same scores as with the prompt pass', async () => {
  const dir = tempDir('ql-passes-');
  const bare = await run(dir, 'bare', `${LOGLIK}measure: [predictions, calibration]\n`);
  const p = bare.summary.precisions.fp32;
  assert.is(p.inference_seconds, 0);
  assert.ok(p.loglik_seconds > 0);
  assert.is(p.attribution_seconds, 0);
  assert.equal(bare.summary.pass_seconds, { inference: 0, loglik: p.loglik_seconds, attribution: 0 });
  // With an activation measure the prompt pass runs (and is timed) and the scores are the same.
  const withNeurons = await run(dir, 'neurons', `${LOGLIK}measure: [predictions, neurons]\n`);
  assert.ok(withNeurons.summary.precisions.fp32.inference_seconds > 0);
  const q = (o: string) => duckdbQuery(`select example_id, predicted_token, confidence, choice_loglik from '${o}/predictions.parquet' order by example_id`);
  const a = await q(bare.out);
  assert.is(a.length, 12);
  assert.equal(a, await q(withNeurons.out));
});

test('first-token with salience: attribution seconds per precision; the second run loads every graph from the cache and writes the same salience', async () => {
  const dir = tempDir('ql-passes-');
  const yaml = 'precisions: [fp32, q4]\nlayers: [1, 3]\nmeasure: [predictions, salience]\nsalience: {steps: 6, limit: 5}\n';
  const first = await run(dir, 'a', yaml);
  for (const p of ['fp32', 'q4']) {
    const t = first.summary.precisions[p];
    assert.ok(t.inference_seconds > 0 && t.attribution_seconds > 0, p);
    assert.is(t.loglik_seconds, 0);
  }
  const ps = first.summary.pass_seconds;
  assert.ok(Math.abs(ps.attribution - first.summary.precisions.fp32.attribution_seconds - first.summary.precisions.q4.attribution_seconds) < 1e-9);
  const graphs = readdirSync(path.join(dir, 'cache', 'attribution')).sort();
  assert.is(graphs.length, 4, 'one graph per (precision, layer)');
  const written = () => graphs.map((g) => statSync(path.join(dir, 'cache', 'attribution', g, 'graph.onnx')).mtimeMs);
  const before = written();
  // Inference batches of one example: attribution groups are then single examples.
  const second = await run(dir, 'b', `${yaml}batch: {max_examples: 1}\n`);
  assert.equal(readdirSync(path.join(dir, 'cache', 'attribution')).sort(), graphs, 'no new graph');
  assert.equal(written(), before, 'all four loaded from the cache, none rewritten');
  const q = (o: string) => duckdbQuery(`select precision, layer, neuron, salient_examples, mean_abs_attr from '${o}/salience.parquet' order by all`);
  const [x, y] = [await q(first.out), await q(second.out)];
  assert.is(x.length, y.length);
  assert.ok(x.length > 0);
  x.forEach((r, i) => {
    assert.equal([r.precision, r.layer, r.neuron, r.salient_examples], [y[i].precision, y[i].layer, y[i].neuron, y[i].salient_examples], `row ${i}`);
    assert.ok(Math.abs((r.mean_abs_attr as number) - (y[i].mean_abs_attr as number)) <= 1e-4 * Math.abs(r.mean_abs_attr as number) + 1e-9, `row ${i} mean_abs_attr`);
  });
});

test.run();
