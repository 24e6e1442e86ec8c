/**
 * SIGKILL at named points of a real-model run (stories260K-onnx, fp32 + nf4 quantized on first
 * use): while quantizing, between the quantized model and its settings, while writing and after
 * renaming checkpoints, between a checkpoint's ledger file and its checkpoint.json, while
 * rotating prediction parts, and at each step of finishing; then during a merge. After each
 * kill the next `run --resume` continues; the final outputs equal an uninterrupted run's: every
 * table, the Parquet metadata and summary.json (timings aside).
 * Kill points are core/fault-point.ts's QUANTLENS_FAULT, so each one is hit deterministically.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { bin, quiet } from './harness.ts';
import { sharedPath } from '../helpers/shared.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { INCOMPLETE_MARKER, resultsIn } from '../../pipelines/output-folder.ts';
import { tempDir } from '../helpers/temp.ts';

const TABLES = ['predictions', 'neurons', 'dead', 'calibration', 'agreement'];
const root = tempDir('ql-kill-');

function writeDataset(n: number): string {
  const subjects = ['the sun', 'water', 'a fish', 'the moon', 'a cat', 'ice', 'a tree', 'the sea'];
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `is ${subjects[i % 8]} ${'very '.repeat((i * 5) % 4)}big and ${subjects[(i * 3) % 8]} small`, gold: i % 3 ? 'True' : 'False' }));
  const file = path.join(root, 'data.jsonl');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function pipelineFile(model: string, data: string, out: string): string {
  const text = [
    'name: killed',
    `model: ${model}`,
    'precisions: [fp32, nf4]',
    'dataset:',
    `  path: ${data}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    'layers: [first, last]',
    'batch: {max_examples: 4, window: 16}',
    'measure: [predictions, neurons, calibration, dead, agreement]',
    'calibration: {bootstrap: 50}',
    'checkpoint_every: 2',
    `output: ${out}`,
  ].join('\n');
  const file = path.join(root, `${path.basename(out)}.yaml`);
  writeFileSync(file, text + '\n');
  return file;
}

function cliRun(args: string[], cache: string, fault?: string): { code: number | null; signal: string | null; stderr: string } {
  const env = { ...process.env, CI: 'true', QUANTLENS_CACHE: cache, QUANTLENS_FAULT: fault ?? '' };
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env });
  return { code: r.status, signal: r.signal, stderr: r.stderr };
}

async function metadataOf(file: string): Promise<Record<string, string>> {
  const meta = await parquetMetadataAsync(await asyncBufferFromFile(file));
  return Object.fromEntries((meta.key_value_metadata ?? []).map((kv) => [kv.key, kv.value ?? '']));
}

/** summary.json without what differs between any two runs (timings). */
function comparableSummary(dir: string, replace: [string, string][]): unknown {
  let text = readFileSync(path.join(dir, 'summary.json'), 'utf8');
  for (const [a, b] of replace) text = text.split(a).join(b);
  return JSON.parse(text, (k, v) => (['wall_seconds', 'tokens_per_second', 'inference_seconds', 'loglik_seconds', 'attribution_seconds', 'pass_seconds'].includes(k) ? undefined : v));
}

async function sameAsReference(dir: string, reference: string, replace: [string, string][], rel: number): Promise<void> {
  for (const t of TABLES) {
    const diffs = await tableDifferences(dir, reference, t, TABLE_KEYS[t], rel, { exactOrder: t === 'predictions' && rel < 1e-6 });
    assert.equal(diffs, [], `${t}: ${diffs.slice(0, 5).join('; ')}`);
    let a = JSON.stringify(await metadataOf(path.join(dir, `${t}.parquet`)));
    for (const [x, y] of replace) a = a.split(x).join(y);
    assert.equal(JSON.parse(a), await metadataOf(path.join(reference, `${t}.parquet`)), `${t}.parquet metadata`);
  }
  if (rel < 1e-6) assert.equal(comparableSummary(dir, replace), comparableSummary(reference, []), 'summary.json');
  assert.not.ok(existsSync(path.join(dir, INCOMPLETE_MARKER)), 'not marked incomplete at the end');
  assert.not.ok(existsSync(path.join(dir, 'state')), 'state folder removed at the end');
  assert.equal(readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temporaries left');
}

/** Kill points in the order a run passes them; each kill is followed by the next `run --resume`. */
const RUN_KILLS = [
  'kill:model_nf4.onnx:written', // quantize on first use, temporary complete, not renamed
  'kill:settings.json:written', // quantized model in place, its settings not yet
  'kill:checkpoint.json:written:1', // first checkpoint's bytes written, not renamed
  'kill:checkpoint.json:renamed:1', // right after a checkpoint
  'kill:ledger-:renamed:1', // the next checkpoint's ledger file in place, checkpoint.json not yet
  'kill:predictions-:written:2', // a prediction part being rotated
  'kill:checkpoint.json:written:2',
  'kill:predictions.parquet:renamed', // finishing: predictions assembled from parts
  'kill:neurons.parquet:written',
  'kill:calibration.parquet:renamed',
  'kill:summary.json:written',
];

test('SIGKILL at 11 points of a stories260K run (quantize, checkpoints, finish), each followed by --resume, gives the uninterrupted outputs', async () => {
  const model = sharedPath('models/stories260K-onnx', 'kill-and-resume on stories260K');
  if (!model) return;
  const data = writeDataset(40);
  const out = path.join(root, 'killed');
  const file = pipelineFile(model, data, out);
  const cache = path.join(root, 'cache');
  const events: string[] = [];
  for (const [k, fault] of RUN_KILLS.entries()) {
    const r = cliRun(['run', file, '--resume', '--quiet', '--no-report'], cache, fault);
    if (k === 0) assert.ok(readdirSync(cache, { recursive: true }).map(String).some((f) => /\.model_nf4\.onnx\.tmp-/.test(f)), 'the quantize kill leaves its temporary');
    events.push(`${fault.slice(5)}: ${r.signal ?? `exit ${r.code}`}`);
    assert.is(r.signal, 'SIGKILL', `killed at ${fault} (${events.join('; ')}): ${r.stderr}`);
    assert.ok(existsSync(path.join(out, INCOMPLETE_MARKER)) || !existsSync(out), `marked incomplete after ${fault}`);
    if (existsSync(out) && resultsIn(out).length) {
      const report = cliRun(['report', out], cache);
      assert.match(report.stderr, /folder is incomplete/, 'report refuses a killed folder');
    }
  }
  const final = cliRun(['run', file, '--resume', '--quiet', '--no-report'], cache);
  assert.is(final.code, 0, final.stderr);
  assert.equal(readdirSync(cache, { recursive: true }).map(String).filter((f) => f.includes('.tmp-')), [], 'stale cache temporaries removed by the next quantize');

  // The uninterrupted run, with its own cache (so it quantizes too) and folder.
  const refOut = path.join(root, 'reference');
  const refCache = path.join(root, 'ref-cache');
  const cfg = parsePipeline(readFileSync(file, 'utf8').replace(`output: ${out}`, `output: ${refOut}`), file);
  await runPipeline(cfg, { ...quiet, cacheDir: refCache });
  await sameAsReference(out, refOut, [[cache, refCache], [out, refOut]], 1e-9);
  console.log(`    ${events.join('; ')}`);
});

test('SIGKILL during merge (after predictions, while writing the summary), then merge again, gives the merged outputs', async () => {
  const model = sharedPath('models/stories260K-onnx', 'kill during merge on stories260K');
  if (!model) return;
  const data = path.join(root, 'data.jsonl');
  if (!existsSync(data)) writeDataset(40);
  const out = path.join(root, 'sharded');
  const file = pipelineFile(model, data, out);
  const cache = path.join(root, 'cache');
  const cfg = () => parsePipeline(readFileSync(file, 'utf8'), file);
  const shards: string[] = [];
  for (let i = 0; i < 2; i++) shards.push((await runPipeline(cfg(), { ...quiet, cacheDir: cache, shard: { index: i, count: 2 } })).outDir);
  for (const fault of ['kill:predictions.parquet:renamed', 'kill:summary.json:written']) {
    const r = cliRun(['merge', ...shards, '--no-report'], cache, fault);
    assert.is(r.signal, 'SIGKILL', `killed at ${fault}: ${r.stderr}`);
    assert.ok(existsSync(path.join(out, INCOMPLETE_MARKER)), `merge folder marked incomplete after ${fault}`);
  }
  const final = cliRun(['merge', ...shards, '--no-report'], cache);
  assert.is(final.code, 0, final.stderr);
  const refOut = path.join(root, 'reference');
  if (!existsSync(path.join(refOut, 'summary.json'))) await runPipeline(parsePipeline(readFileSync(file, 'utf8').replace(`output: ${out}`, `output: ${refOut}`), file), { ...quiet, cacheDir: cache });
  // Shards batch differently from the single run: float32 results differ by ~1e-7 (see README, Scale).
  for (const t of ['neurons', 'dead', 'agreement']) {
    const diffs = await tableDifferences(out, refOut, t, TABLE_KEYS[t], 1e-3);
    assert.ok(diffs.length === 0 || t !== 'neurons' || diffs.every((d) => /near_zero_fraction/.test(d)), `${t}: ${diffs.slice(0, 3).join('; ')}`);
  }
  assert.not.ok(existsSync(path.join(out, INCOMPLETE_MARKER)));
});

test('a run killed over an older run\'s folder leaves only its own files, marked incomplete', () => {
  const dir = tempDir('ql-over-');
  const file = path.join(dir, 'p.yaml');
  writeFileSync(file, 'model: demo\ndataset:\n  path: demo\nmeasure: [predictions, neurons, calibration]\noutput: out\n');
  const cache = path.join(dir, 'cache');
  assert.is(cliRun(['run', file, '--limit', '64', '--quiet'], cache).code, 0);
  assert.ok(existsSync(path.join(dir, 'out', 'report.html')));
  // Replacing a finished folder takes --force (issue 13); the crash happens while it is replaced.
  const r = cliRun(['run', file, '--limit', '32', '--quiet', '--force'], cache, 'kill:predictions.parquet:renamed');
  assert.is(r.signal, 'SIGKILL');
  assert.equal(resultsIn(path.join(dir, 'out')), ['predictions.parquet'], 'the older run\'s summary, calibration and report are gone');
  assert.ok(existsSync(path.join(dir, 'out', INCOMPLETE_MARKER)));
  assert.match(cliRun(['report', path.join(dir, 'out')], cache).stderr, /out: folder is incomplete/);
  assert.is(cliRun(['run', file, '--limit', '32', '--quiet'], cache).code, 0);
  assert.not.ok(existsSync(path.join(dir, 'out', INCOMPLETE_MARKER)));
  assert.is(JSON.parse(readFileSync(path.join(dir, 'out', 'summary.json'), 'utf8')).dataset.examples, 32);
});

test.run();
