/**
 * What merging shards promises with ordinary batching (README, Scale). A shard batches its own
 * examples, so ONNX Runtime sees other batch shapes than in the single run and its float32
 * results move by ~1e-7. Checked here against a brute-force count over the raw activations of
 * the single run (an `activations:` dump):
 *   exact      — row sets, example and token counts, every neuron's `count`;
 *   bounded    — mean, variance, min, max within 1e-4 relative;
 *   near_zero_fraction × count moves by at most the number of that neuron's activations lying
 *                within δ = 1e-5 of a near-zero bound (only they can cross it); likewise a neuron
 *                can change dead/alive only if its max |activation| lies within δ of a bound.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as arrow from 'apache-arrow';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { mergeShards } from '../../pipelines/merge.ts';
import { closeEnough, readTable } from '../helpers/run-tables.ts';
import { quiet } from './harness.ts';
import { tempDir } from '../helpers/temp.ts';

const DELTA = 1e-5;
const BOUND = 0.1;

function pipeline(root: string, name: string, extra: string): { file: string; text: string } {
  const text = [
    `name: ${name}`,
    'model: demo',
    'dataset:',
    '  path: demo',
    'layers: [first, last]',
    'batch: {max_examples: 16, window: 64}',
    'measure: [predictions, neurons, dead]',
    `output: ${path.join(root, name)}`,
    extra,
  ].join('\n');
  const file = path.join(root, `${name}.yaml`);
  writeFileSync(file, text + '\n');
  return { file, text };
}

/** Per (layer, neuron): activations within DELTA of ±BOUND, and the largest |activation|. */
function nearBound(dump: string): Map<string, { near: number; maxAbs: number }> {
  const out = new Map<string, { near: number; maxAbs: number }>();
  for (const f of readdirSync(dump).filter((n) => n.endsWith('.arrow'))) {
    const table = arrow.tableFromIPC(readFileSync(path.join(dump, f)));
    const layers = table.getChild('layer')!.toArray() as Int32Array;
    const values = table.getChild('values')!;
    for (let r = 0; r < table.numRows; r++) {
      const row = values.get(r)!.toArray() as Float32Array;
      for (let n = 0; n < row.length; n++) {
        const k = `${layers[r]}/${n}`;
        const e = out.get(k) ?? { near: 0, maxAbs: 0 };
        const a = Math.abs(row[n]);
        if (Math.abs(a - BOUND) <= DELTA) e.near++;
        e.maxAbs = Math.max(e.maxAbs, a);
        out.set(k, e);
      }
    }
  }
  return out;
}

test('4 merged shards vs the single run with batching: exact counts, bounded statistics, near-zero moves only by activations at the bound', async () => {
  const root = tempDir('ql-claims-');
  const single = pipeline(root, 'single', 'activations: {format: arrow}');
  await runPipeline(parsePipeline(single.text, single.file), { ...quiet, report: false });
  const sharded = pipeline(root, 'sharded', '');
  const dirs: string[] = [];
  for (let i = 0; i < 4; i++) dirs.push((await runPipeline(parsePipeline(sharded.text, sharded.file), { ...quiet, shard: { index: i, count: 4 } })).outDir);
  const merged = await mergeShards(dirs, { report: false, log: () => undefined });

  const near = nearBound(path.join(root, 'single', 'activations'));
  const a = (await readTable(path.join(merged.outDir, 'neurons.parquet'))).rows;
  const b = new Map((await readTable(path.join(root, 'single', 'neurons.parquet'))).rows.map((r) => [`${r.layer}/${r.neuron}`, r]));
  assert.is(a.length, b.size);
  let moved = 0;
  for (const r of a) {
    const k = `${r.layer}/${r.neuron}`;
    const s = b.get(k)!;
    assert.is(r.count, s.count, `${k} count is exact`);
    for (const c of ['mean', 'variance', 'min', 'max']) assert.ok(closeEnough(r[c] as number, s[c] as number, 1e-4) || Math.abs((r[c] as number) - (s[c] as number)) < 1e-7, `${k} ${c}: ${r[c]} vs ${s[c]}`);
    const crossed = Math.round(Math.abs((r.near_zero_fraction as number) - (s.near_zero_fraction as number)) * Number(s.count));
    assert.ok(crossed <= near.get(k)!.near, `${k}: ${crossed} activations crossed a near-zero bound, only ${near.get(k)!.near} lie within ${DELTA} of it`);
    moved += crossed;
  }
  const dead = (dir: string) => readTable(path.join(dir, 'dead.parquet')).then((t) => new Map(t.rows.map((r) => [`${r.layer}`, new Set(r.dead_ids as number[])])));
  const [da, db] = [await dead(merged.outDir), await dead(path.join(root, 'single'))];
  for (const [layer, ids] of db)
    for (const n of new Set([...ids, ...da.get(layer)!])) if (ids.has(n) !== da.get(layer)!.has(n)) assert.ok(Math.abs(near.get(`${layer}/${n}`)!.maxAbs - BOUND) <= DELTA, `layer ${layer} neuron ${n} changed dead/alive away from the bound`);
  const pa = (await readTable(path.join(merged.outDir, 'predictions.parquet'))).rows.map((r) => `${r.precision}/${r.example_id}`).sort();
  const pb = (await readTable(path.join(root, 'single', 'predictions.parquet'))).rows.map((r) => `${r.precision}/${r.example_id}`).sort();
  assert.equal(pa, pb, 'the same prediction rows');
  assert.is(merged.summary.precisions.fp32.tokens, JSON.parse(readFileSync(path.join(root, 'single', 'summary.json'), 'utf8')).precisions.fp32.tokens);
  console.log(`    ${moved} activation(s) crossed a near-zero bound between batchings`);
});

test.run();
