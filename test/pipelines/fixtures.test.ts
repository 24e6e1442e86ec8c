/** The pipeline on the other exporters' fixtures: fp16 + external data (onnxruntime-genai builder). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

test('tiny-random-llama-fp16: fp16 activations are captured, widened to float32 and summarised', async () => {
  const model = sharedPath('models/tiny-random-llama-fp16', 'fp16 pipeline');
  const data = sharedPath('datasets/piqa.csv', 'fp16 pipeline');
  if (!model || !data) return;
  const out = tempDir('ql-fp16-');
  const cfg = parsePipeline(`model: ${model}\nprecisions: [fp16]\ndataset: {path: ${data}, limit: 24}\nmeasure: [predictions, neurons, dead]\nactivations: {format: arrow}\noutput: ${out}\n`, path.join(out, 'p.yaml'));
  let tokens = 0;
  const maxAbs = new Map<number, number>();
  await runPipeline(cfg, {
    quiet: true,
    report: false,
    log: () => undefined,
    onBatch: (r) => {
      tokens += r.batch.realTokens;
      for (const c of r.outputs[0].chunks) for (const v of c.values) maxAbs.set(c.layer, Math.max(maxAbs.get(c.layer) ?? 0, Math.abs(v)));
    },
  });
  const rows = await duckdbQuery(`select layer, count(*)::int as n, min(count)::bigint as c, max(greatest(abs(min), abs(max))) as m from '${out}/neurons.parquet' group by layer order by layer`);
  assert.equal(rows.map((r) => [r.layer, r.n, Number(r.c)]), [[0, 64, tokens], [1, 64, tokens]]);
  for (const r of rows) assert.is(r.m, maxAbs.get(r.layer as number));
  const preds = await duckdbQuery(`select count(*)::int as n, bool_and(confidence between 0 and 1) as ok from '${out}/predictions.parquet'`);
  assert.equal(preds[0], { n: 24, ok: true });
});

test.run();
