/**
 * Shard merge: 4 shards of a pipeline, merged, must equal the single run of the same pipeline —
 * every Parquet table (counts, histograms, dead ids identical; float64 statistics within 1e-9
 * relative; predictions identical, even in row order) and the summary's numbers.
 *
 * The exact comparison uses batch.max_examples: 1, so every example is inferred alone in both the
 * single run and the shards: ONNX Runtime's float32 kernels give slightly different numbers for
 * the same row in differently shaped batches (~1e-7), which would hide merge errors. A second case
 * uses ordinary batching and checks the same tables at a float32 tolerance.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { mergeShards, singleRunBatches } from '../../pipelines/merge.ts';
import { isQuantlensError } from '../../core/errors.ts';
import { sharedPath } from '../helpers/shared.ts';
import { closeEnough, readTable, tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { cutWindow } from '../../operators/batch.ts';
import { tempDir } from '../helpers/temp.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const quiet = { quiet: true, log: () => undefined } as const;
const TABLES = ['predictions', 'neurons', 'dead', 'correlation', 'calibration'];

function pipeline(root: string, name: string, extra: string[], body?: string[]) {
  const yaml = (
    body ?? [
      'model: demo',
      'precisions: [fp32]',
      'dataset:',
      '  path: demo',
      '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
      '  gold: gold',
      'layers: [first, middle, last]',
      'measure: [predictions, neurons, calibration, dead, correlation]',
    ]
  ).concat([`name: ${name}`, `output: ${path.join(root, name)}`, ...extra]);
  const file = path.join(root, `${name}.yaml`);
  writeFileSync(file, yaml.join('\n') + '\n');
  return { file, cfg: () => parsePipeline(yaml.join('\n'), file) };
}

async function runShards(p: ReturnType<typeof pipeline>, count: number): Promise<string[]> {
  const dirs: string[] = [];
  for (let i = 0; i < count; i++) dirs.push((await runPipeline(p.cfg(), { ...quiet, shard: { index: i, count } })).outDir);
  return dirs;
}

async function expectState(fn: () => Promise<unknown>, naming: string, what: string) {
  try {
    await fn();
  } catch (e) {
    assert.ok(isQuantlensError(e), `${what}: ${String(e)}`);
    assert.is(e.code, 'STATE', what);
    assert.ok(!e.message.includes('\n'), `${what}: one line`);
    assert.ok(e.message.includes(naming), `${what}: "${e.message}" names ${naming}`);
    return;
  }
  assert.unreachable(`${what}: merge accepted it`);
}

function rel(a: number, b: number) {
  return closeEnough(a, b, 1e-9);
}

test('singleRunBatches reproduces batchByTokens order from (id, length) pairs', () => {
  // Independent twin: feed the same examples through cutWindow window by window.
  const ex = Array.from({ length: 103 }, (_, i) => ({ id: i * 3 + 1, length: 1 + ((i * 37) % 23) }));
  const shuffled = [...ex].sort((a, b) => ((a.id * 7919) % 101) - ((b.id * 7919) % 101));
  const got = singleRunBatches(shuffled, { max_tokens: 60, max_examples: 5, window: 16 });
  const want: number[][] = [];
  let padded = 0;
  for (let s = 0; s < ex.length; s += 16) {
    const w = ex.slice(s, s + 16).map((e) => ({ example_id: e.id, ids: new Int32Array(e.length), gold: '', truncated: false, fields: {} }));
    for (const b of cutWindow(w, { maxTokens: 60, maxExamples: 5, window: 16 }, 0)) {
      want.push(b.examples.map((e) => e.example_id));
      padded += b.examples.length * Math.max(...b.examples.map((e) => e.ids.length)) - b.examples.reduce((t, e) => t + e.ids.length, 0);
    }
  }
  assert.equal(got.batches, want);
  assert.is(got.padded, padded);
  assert.equal(got.batches.flat().sort((a, b) => a - b), ex.map((e) => e.id));
});

test('4 demo shards merged = the single run (tables, predictions order, summary)', async () => {
  const root = tempDir('ql-merge-');
  const p = pipeline(root, 'exact', ['batch: {max_examples: 1, window: 16}', 'calibration: {bootstrap: 200}']);
  const single = await runPipeline(p.cfg(), { ...quiet, report: false });
  // The single run wrote to <root>/exact; move it aside so the shards and the merge use the same pipeline file.
  const singleDir = path.join(root, 'single');
  renameSync(single.outDir, singleDir);
  const dirs = await runShards(p, 4);
  for (const d of dirs) assert.ok(existsSync(path.join(d, 'state.json')), `${d}/state.json`);
  const merged = await mergeShards(dirs, { ...quiet, report: false });
  assert.is(merged.outDir, path.join(root, 'exact'));

  for (const t of TABLES) {
    const diffs = await tableDifferences(merged.outDir, singleDir, t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' });
    assert.equal(diffs, [], `${t}: ${diffs.join('; ')}`);
  }
  // The shards really split the work: each has a quarter of the predictions, disjoint.
  const seen = new Set<number>();
  for (const d of dirs) {
    const { rows } = await readTable(path.join(d, 'predictions.parquet'));
    assert.is(rows.length, 16);
    for (const r of rows) {
      assert.ok(!seen.has(r.example_id as number));
      seen.add(r.example_id as number);
    }
  }
  assert.is(seen.size, 64);

  const a = merged.summary;
  const b = single.summary;
  assert.is(a.dataset.examples, b.dataset.examples);
  assert.is(a.truncated, b.truncated);
  assert.is(a.padding_efficiency, b.padding_efficiency);
  for (const k of ['examples', 'tokens']) assert.is(a.precisions.fp32[k], b.precisions.fp32[k], k);
  for (const k of ['accuracy', 'mean_confidence', 'ace', 'ece', 'mce']) assert.ok(rel(a.precisions.fp32[k], b.precisions.fp32[k]), `${k} ${a.precisions.fp32[k]} vs ${b.precisions.fp32[k]}`);
  for (const k of ['accuracy_ci', 'ace_ci']) for (const i of [0, 1]) assert.ok(rel(a.precisions.fp32[k][i], b.precisions.fp32[k][i]), `${k}[${i}]`);
  assert.equal(a.dead, b.dead);
  assert.is(a.correlation.length, b.correlation.length);
  a.correlation.forEach((s: any, i: number) => {
    const t = b.correlation[i];
    for (const k of ['layer', 'tensor', 'precision', 'tokens', 'neurons', 'constant_neurons', 'undefined_pairs', 'clusters', 'independent_neurons']) assert.is(s[k], t[k], `correlation ${i} ${k}`);
    assert.equal(s.top_pairs.map((q: any) => [q.i, q.j]), t.top_pairs.map((q: any) => [q.i, q.j]));
    s.top_pairs.forEach((q: any, j: number) => assert.ok(rel(q.r, t.top_pairs[j].r), `top pair ${j} r`));
  });
  rmSync(root, { recursive: true, force: true });
});

test('ordinary batching: merged = single run at float32 tolerance; refusals name the folder', async () => {
  const root = tempDir('ql-merge-');
  const p = pipeline(root, 'batched', ['batch: {max_examples: 8, window: 32}', 'calibration: {bootstrap: 0}']);
  const single = await runPipeline(p.cfg(), { ...quiet, report: false });
  const singleDir = path.join(root, 'single');
  renameSync(single.outDir, singleDir);
  const dirs = await runShards(p, 4);

  // Incomplete, duplicate, foreign: refused before anything is written.
  await expectState(() => mergeShards(dirs.slice(0, 3), quiet), 'shard-3-of-4', 'missing shard');
  await expectState(() => mergeShards([...dirs, dirs[1]], quiet), dirs[1], 'duplicate shard');
  // Same name and layout, another dead-neuron band: a different pipeline.
  mkdirSync(path.join(root, 'other'));
  const other = pipeline(path.join(root, 'other'), 'batched', ['batch: {max_examples: 8, window: 32}', 'calibration: {bootstrap: 0}', 'dead: {lo: -0.2, hi: 0.2}']);
  const foreign = (await runPipeline(other.cfg(), { ...quiet, shard: { index: 2, count: 4 } })).outDir;
  await expectState(() => mergeShards([dirs[0], dirs[1], foreign, dirs[3]], quiet), foreign, 'different pipeline');
  await expectState(() => mergeShards([...dirs.slice(0, 3), singleDir], quiet), singleDir, 'not a shard folder');
  assert.not.ok(existsSync(path.join(root, 'batched', 'summary.json')), 'refused merges wrote nothing');

  // Through the CLI, into another folder.
  const outCli = path.join(root, 'merged-cli');
  const r = spawnSync(process.execPath, [path.join(repo, 'pipelines', 'bin.mjs'), 'merge', ...dirs, '--output', outCli, '--quiet', '--no-report'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  // ORT's float32 kernels depend on the batch shape, and the shards batch differently: ~1e-7.
  for (const t of TABLES) {
    const diffs = await tableDifferences(outCli, singleDir, t, TABLE_KEYS[t], 1e-4);
    assert.equal(diffs, [], `${t}: ${diffs.join('; ')}`);
  }
  const cliDup = spawnSync(process.execPath, [path.join(repo, 'pipelines', 'bin.mjs'), 'merge', dirs[0], dirs[0], '--output', outCli], { encoding: 'utf8' });
  assert.is(cliDup.status, 1);
  assert.is(cliDup.stderr.trim().split('\n').length, 1, cliDup.stderr);
  assert.match(cliDup.stderr, /duplicate shard/);
  // A finished merge folder is not overwritten without --force (the shard set is checked first).
  const again = spawnSync(process.execPath, [path.join(repo, 'pipelines', 'bin.mjs'), 'merge', ...dirs, '--out', outCli, '--quiet', '--no-report'], { encoding: 'utf8' });
  assert.is(again.status, 1);
  assert.is(again.stderr.trim(), `quantlens: ${outCli}: holds a finished run (summary.json); use --force to overwrite it, or --output for another folder`);
  const forced = spawnSync(process.execPath, [path.join(repo, 'pipelines', 'bin.mjs'), 'merge', ...dirs, '--output', outCli, '--force', '--quiet', '--no-report'], { encoding: 'utf8' });
  assert.is(forced.status, 0, forced.stderr);
  rmSync(root, { recursive: true, force: true });
});

test('two precisions with agreement: 3 shards merged = the single run', async () => {
  const root = tempDir('ql-merge-');
  const p = pipeline(root, 'agree', ['batch: {max_examples: 1}', 'calibration: {bootstrap: 50}'], [
    'model: demo',
    'precisions: [fp32, int8]',
    'dataset:',
    '  path: demo',
    '  gold: gold',
    'layers: [first, last]',
    'measure: [predictions, dead, agreement]',
  ]);
  const single = await runPipeline(p.cfg(), { ...quiet, report: false });
  const singleDir = path.join(root, 'single');
  renameSync(single.outDir, singleDir);
  const merged = await mergeShards(await runShards(p, 3), { ...quiet, report: false });
  for (const t of ['predictions', 'dead', 'agreement']) {
    const diffs = await tableDifferences(merged.outDir, singleDir, t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' });
    assert.equal(diffs, [], `${t}: ${diffs.join('; ')}`);
  }
  const { rows } = await readTable(path.join(merged.outDir, 'agreement.parquet'));
  assert.ok(rows.some((r) => r.metric === 'kl_median'), 'agreement rows present');
  assert.is(merged.summary.precisions.int8.examples, 64);
  for (const q of ['fp32', 'int8']) for (const k of ['ace', 'ece', 'accuracy']) assert.ok(rel(merged.summary.precisions[q][k], single.summary.precisions[q][k]), `${q} ${k}`);
  rmSync(root, { recursive: true, force: true });
});

test('BoolQ × stories260K-onnx: 4 shards merged = single run', async () => {
  const model = sharedPath('models/stories260K-onnx', 'shard merge on BoolQ');
  const data = sharedPath('datasets/boolq.csv', 'shard merge on BoolQ');
  if (!model || !data) return;
  const root = tempDir('ql-merge-boolq-');
  const body = [
    `model: ${model}`,
    'precisions: [fp32]',
    'dataset:',
    `  path: ${data}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    '  gold: gold',
    '  limit: 120',
    'layers: [first, middle, last]',
    'batch: {max_examples: 1}',
    'measure: [predictions, neurons, calibration, dead, correlation]',
    'calibration: {bootstrap: 100}',
  ];
  const p = pipeline(root, 'boolq', [], body);
  const single = await runPipeline(p.cfg(), { ...quiet, report: false });
  const singleDir = path.join(root, 'single');
  renameSync(single.outDir, singleDir);
  const merged = await mergeShards(await runShards(p, 4), { ...quiet, report: false });
  for (const t of TABLES) {
    const diffs = await tableDifferences(merged.outDir, singleDir, t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' });
    assert.equal(diffs, [], `${t}: ${diffs.join('; ')}`);
  }
  assert.is(merged.summary.dataset.examples, 120);
  for (const k of ['ace', 'ece', 'accuracy']) assert.ok(rel(merged.summary.precisions.fp32[k], single.summary.precisions.fp32[k]), k);
  rmSync(root, { recursive: true, force: true });
});

test.run();
