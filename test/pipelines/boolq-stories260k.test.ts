/**
 * Acceptance of the spine on real data: the BoolQ pipeline at limit 500 with fp32 on
 * stories260K-onnx. neurons.parquet must equal a brute-force computation over every activation
 * the run captured, and DuckDB must read every output file.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

test('BoolQ × stories260K fp32, 500 prompts: predictions, neurons vs brute force, DuckDB reads all', async () => {
  const model = sharedPath('models/stories260K-onnx', 'BoolQ pipeline acceptance');
  const data = sharedPath('datasets/boolq.csv', 'BoolQ pipeline acceptance');
  if (!model || !data) return;
  const out = tempDir('ql-boolq-');
  const yaml = [
    'name: boolq-stories260k',
    `model: ${model}`,
    'precisions: [fp32]',
    'dataset:',
    `  path: ${data}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    '  gold: gold',
    '  limit: 500',
    'layers: [first, middle, last]',
    'batch: {max_tokens: 4096}',
    'measure: [predictions, neurons]',
    // The dump makes the run hand every activation to JS as well, for the brute-force twin;
    // the neurons statistics themselves are reduced inside the ONNX graph.
    'activations: {format: arrow, every: 1}',
    `output: ${out}`,
  ].join('\n');
  const cfg = parsePipeline(yaml, path.join(out, 'p.yaml'));

  // Brute force twin: keep a copy of every captured activation row, per layer.
  const captured = new Map<number, number[][]>();
  const { summary } = await runPipeline(cfg, {
    quiet: true,
    report: false,
    log: () => undefined,
    onBatch: (r) => {
      for (const c of r.outputs[0].chunks) {
        const rows = captured.get(c.layer) ?? [];
        for (let i = 0; i < c.rows; i++) rows.push(Array.from(c.values.subarray(i * c.width, (i + 1) * c.width)));
        captured.set(c.layer, rows);
      }
    },
  });

  const preds = await duckdbQuery(`select count(*)::int as n, count(distinct example_id)::int as ids, min(example_id)::int as lo, max(example_id)::int as hi from '${out}/predictions.parquet'`);
  assert.equal(preds[0], { n: 500, ids: 500, lo: 0, hi: 499 });

  const neurons = await duckdbQuery(`select layer, neuron, count::bigint as count, mean, variance, min, max from '${out}/neurons.parquet' order by layer, neuron`);
  assert.is(neurons.length, 3 * 172);
  assert.equal([...captured.keys()].sort(), [0, 2, 4]);
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
  for (const row of neurons) {
    const rows = captured.get(row.layer as number)!;
    const j = row.neuron as number;
    let sum = 0, min = Infinity, max = -Infinity;
    for (const r of rows) { sum += r[j]; min = Math.min(min, r[j]); max = Math.max(max, r[j]); }
    const mean = sum / rows.length;
    let ss = 0;
    for (const r of rows) ss += (r[j] - mean) ** 2;
    assert.is(Number(row.count), rows.length);
    assert.ok(rel(row.mean as number, mean) < 1e-6 || Math.abs((row.mean as number) - mean) < 1e-12, `mean layer ${row.layer} neuron ${j}`);
    assert.ok(rel(row.variance as number, ss / rows.length) < 1e-6, `variance layer ${row.layer} neuron ${j}`);
    assert.is(row.min, min);
    assert.is(row.max, max);
  }
  // Every token of every prompt was captured exactly once (pads dropped).
  assert.is(captured.get(0)!.length, summary.precisions.fp32.tokens);
  // The dump on disk holds the same rows.
  const { tableFromIPC } = await import('apache-arrow');
  const dumped = tableFromIPC((await import('node:fs')).readFileSync(path.join(out, 'activations', 'fp32-layer0.arrow')));
  assert.is(dumped.numRows, captured.get(0)!.length);

  for (const f of ['predictions', 'neurons']) {
    const kv = await duckdbQuery(`select decode(key)::varchar as k, decode(value)::varchar as v from parquet_kv_metadata('${out}/${f}.parquet')`);
    const keys = new Set(kv.map((r) => r.k));
    for (const k of ['quantlens.model_hash', 'quantlens.ort_version', 'quantlens.session_settings', 'quantlens.precisions', 'quantlens.pipeline']) assert.ok(keys.has(k), `${f}.parquet metadata has ${k}`);
  }
  const s = JSON.parse((await import('node:fs')).readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.is(s.precisions.fp32.examples, 500);
  assert.is(s.truncated, 0);
});

test.run();
