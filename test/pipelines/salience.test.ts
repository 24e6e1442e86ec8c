/** `measure: salience` in a real run: rows, union counts and completeness reach the outputs. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';

test('stories260K: salience.parquet and summary union counts agree; completeness holds at layers 2 and 4', async () => {
  const model = sharedPath('models/stories260K-onnx', 'salience in a run');
  const data = sharedPath('datasets/boolq.csv', 'salience in a run');
  if (!model || !data) return;
  const out = mkdtempSync(path.join(os.tmpdir(), 'ql-sal-'));
  const cfg = parsePipeline(
    `model: ${model}\ndataset:\n  path: ${data}\n  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"\n  limit: 6\nlayers: [2, 4]\nmeasure: [predictions, salience]\nsalience: {steps: 32}\noutput: ${out}\n`,
    path.join(out, 'p.yaml'),
  );
  await runPipeline(cfg, { quiet: true, report: true, log: () => undefined });
  const rows = await duckdbQuery(`select layer, count(*)::int as n, count(*) filter (where salient_examples > 0)::int as u, max(salient_examples)::int as mx, min(mean_abs_attr) as lo from '${out}/salience.parquet' group by layer order by layer`);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  for (const r of rows) {
    assert.is(r.n, 172);
    assert.ok((r.mx as number) <= 6 && (r.lo as number) >= 0);
    const s = summary.salience.fp32[String(r.layer)];
    assert.is(s.union_count, r.u, `layer ${r.layer} union count`);
    // Every example has at least one neuron at normalised |attr| = 1 under each aggregation.
    assert.ok((r.u as number) >= 1);
    assert.is(s.completeness.count, 6);
    assert.ok(s.completeness.max < 1e-3, `layer ${r.layer} completeness ${s.completeness.max}`);
  }
});

test.run();
