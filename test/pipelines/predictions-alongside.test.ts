/**
 * A fresh checkpointed run writes predictions.parquet while it streams (beside the checkpoint's
 * part files, which only a resume reads), so its end does not read the parts back. The file must
 * be byte-for-byte the one a resumed run assembles from its parts, and a failed run must leave
 * neither the file nor its temporary.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { tempDir } from '../helpers/temp.ts';

const quiet = { quiet: true, report: false, log: () => undefined } as const;
const root = tempDir('ql-alongside-');

function pipeline(): { text: string; file: string; out: string } {
  const lines = Array.from({ length: 150 }, (_, i) => JSON.stringify({ prompt: `is item ${i} ${'big '.repeat(i % 5)}round`, gold: i % 3 ? 'True' : 'False' }));
  const data = path.join(root, 'data.jsonl');
  writeFileSync(data, lines.join('\n') + '\n');
  const out = path.join(root, 'out');
  const text = ['model: demo', 'dataset:', `  path: ${data}`, 'batch: {max_examples: 8, window: 32}', 'measure: [predictions, calibration]', 'calibration: {bootstrap: 50}', 'checkpoint_every: 2', `output: ${out}`].join('\n');
  const file = path.join(root, 'p.yaml');
  writeFileSync(file, text + '\n');
  return { text, file, out };
}

const temporaries = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('.predictions.parquet.tmp-'));

test('a fresh run writes predictions.parquet during the stream, byte-identical to the file a resume assembles from parts', async () => {
  const p = pipeline();
  let duringStream: string[] = [];
  let parts = 0;
  let seen = 0;
  await runPipeline(parsePipeline(p.text, p.file), {
    ...quiet,
    onBatch: () => {
      if (++seen !== 9) return;
      duringStream = temporaries(p.out);
      parts = readdirSync(path.join(p.out, 'state')).filter((f) => /^predictions-\d+\.parquet$/.test(f)).length;
    },
  });
  assert.is(duringStream.length, 1, 'predictions.parquet is being written while the run streams');
  assert.ok(parts >= 4, `the checkpoint's parts are written too (${parts} after 9 batches)`);
  const fresh = readFileSync(path.join(p.out, 'predictions.parquet'));
  const freshSummary = JSON.parse(readFileSync(path.join(p.out, 'summary.json'), 'utf8'));

  // The same run, failing after batch 7 (checkpoint after 6), then resumed: its file comes from parts.
  seen = 0;
  const failed = await runPipeline(parsePipeline(p.text, p.file), { ...quiet, onBatch: () => { if (++seen === 7) throw new Error('simulated crash'); } }).then(() => false, () => true);
  assert.ok(failed);
  assert.not.ok(existsSync(path.join(p.out, 'predictions.parquet')), 'a failed run leaves no predictions.parquet');
  assert.equal(temporaries(p.out), [], 'and no temporary of it');
  await runPipeline(parsePipeline(p.text, p.file), { ...quiet, resume: true });
  const resumed = readFileSync(path.join(p.out, 'predictions.parquet'));
  assert.ok(resumed.equals(fresh), `predictions.parquet: ${resumed.length} bytes resumed vs ${fresh.length} fresh, not identical`);
  const summary = JSON.parse(readFileSync(path.join(p.out, 'summary.json'), 'utf8'));
  assert.equal(summary.precisions.fp32.ace_ci, freshSummary.precisions.fp32.ace_ci);
  assert.equal(summary.precisions.fp32.accuracy_ci, freshSummary.precisions.fp32.accuracy_ci);
});

test.run();
