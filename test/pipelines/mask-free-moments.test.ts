/**
 * A model without an attention_mask input (it sees only input_ids; pads come after the real
 * tokens under right padding, which its causal attention never lets them reach) still gets the
 * in-graph block moments: they read the real rows fed per batch, not the mask. Its neuron
 * statistics equal a float64 brute force over the same run's captured activations.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { appendGraphFragment } from '../../onnx/builder.ts';
import { fields, ProtoWriter, str } from '../../onnx/wire.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

/** The model with graph input `attention_mask` removed and computed inside as ones shaped like input_ids. */
function withoutMaskInput(model: Uint8Array): Uint8Array {
  const out = new ProtoWriter();
  for (const f of fields(model)) {
    if (f.field !== 7) {
      out.raw(model.subarray(f.fieldStart, f.end));
      continue;
    }
    const graph = new ProtoWriter();
    for (const g of fields(model, f.start, f.end)) {
      const name = g.field === 11 ? [...fields(model, g.start, g.end)].find((v) => v.field === 1) : undefined;
      if (!name || str(model, name) !== 'attention_mask') graph.raw(model.subarray(g.fieldStart, g.end));
    }
    out.bytes(7, graph.finish());
  }
  return appendGraphFragment(out.finish(), {
    nodes: [
      { opType: 'Equal', inputs: ['input_ids', 'input_ids'], outputs: ['mask_free/ones'] },
      { opType: 'Cast', inputs: ['mask_free/ones'], outputs: ['attention_mask'], attrs: { to: 7 } },
    ],
  });
}

test('no attention_mask input: moments in the graph, equal to a float64 brute force', async () => {
  const demo = await ensureDemoModel();
  const dir = tempDir('ql-nomask-');
  const model = path.join(dir, 'model');
  mkdirSync(model);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(demo, f), path.join(model, f));
  writeFileSync(path.join(model, 'model.onnx'), withoutMaskInput(readFileSync(path.join(demo, 'model.onnx'))));
  const cfg = parsePipeline(
    `model: model\ndataset:\n  path: ${path.join(demo, 'prompts.jsonl')}\n  limit: 24\nlayers: [first]\nbatch: {max_examples: 8}\nmeasure: [predictions, neurons, correlation]\noutput: out\n`,
    path.join(dir, 'p.yaml'),
  );
  const rows: Float64Array[] = [];
  let inGraph = 0, batches = 0;
  await runPipeline(cfg, {
    quiet: true,
    report: false,
    cacheDir: path.join(dir, 'cache'),
    log: () => undefined,
    onBatch: (r) => {
      const o = r.outputs[0];
      batches++;
      if (o.moments.length > 0) inGraph++;
      for (const c of o.chunks) for (let i = 0; i < c.rows; i++) rows.push(Float64Array.from(c.values.subarray(i * c.width, (i + 1) * c.width)));
    },
  });
  assert.ok(batches > 1 && inGraph === batches, `in-graph moments in ${inGraph} of ${batches} batches`);
  const got = await duckdbQuery(`select neuron, count::bigint as count, mean, variance, min, max from '${path.join(dir, 'out', 'neurons.parquet')}' order by neuron`);
  const d = rows[0].length;
  assert.is(got.length, d);
  for (let j = 0; j < d; j++) {
    let sum = 0, lo = Infinity, hi = -Infinity;
    for (const x of rows) { sum += x[j]; lo = Math.min(lo, x[j]); hi = Math.max(hi, x[j]); }
    const mean = sum / rows.length;
    let m2 = 0;
    for (const x of rows) m2 += (x[j] - mean) ** 2;
    const g = got[j] as { count: bigint; mean: number; variance: number; min: number; max: number };
    assert.is(Number(g.count), rows.length, `neuron ${j} count`);
    assert.ok(Math.abs(g.mean - mean) <= 1e-6 * (Math.abs(mean) + Math.sqrt(m2 / rows.length)), `neuron ${j} mean ${g.mean} vs ${mean}`);
    const variance = m2 / rows.length; // population variance, as the neurons estimator reports it
    assert.ok(Math.abs(g.variance - variance) <= 1e-5 * variance + 1e-12, `neuron ${j} variance ${g.variance} vs ${variance}`);
    assert.is(g.min, lo, `neuron ${j} min`);
    assert.is(g.max, hi, `neuron ${j} max`);
  }
});

test.run();
