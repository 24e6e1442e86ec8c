/**
 * Multi-pass correlation (issue 11): a correlation budget that holds two of the six (layer,
 * precision) keys forces three passes; the result must equal the single pass's exactly —
 * correlation.parquet (histogram counts), the summary's correlation records, and the float64
 * co-moments of the binary shard states (within 1e-12; the extra passes run the same sessions on
 * the same batches, so they are in fact bit for bit equal). A shard of the multi-pass run merges
 * into the same tables; a run killed after its second pass resumes at the third, one killed inside
 * its second pass resumes there, and both give the same result; a budget below one key is refused before any output exists, naming the key and the excess.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { runPipeline } from '../../pipelines/run.ts';
import { mergeShards } from '../../pipelines/merge.ts';
import { correlationMemoryBytes, type CoMomentFileEntry } from '../../operators/estimators/correlation.ts';
import { CoMomentReader } from '../../operators/estimators/correlation-state-file.ts';
import { finishScratchBytes, gramTransientBytes } from '../../pipelines/correlation-budget.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { runCli, yamlPipeline } from '../helpers/pipeline.ts';
import { expectRejects } from '../helpers/expect-error.ts';
import { tempDir } from '../helpers/temp.ts';

const GiB = 1024 ** 3;
const WIDTH = 192; // the demo model's d_ff
const MAX_TOKENS = 256;
const root = tempDir('ql-corr-passes-');
const cache = path.join(root, 'cache');
const quiet = { quiet: true, report: false, cacheDir: cache, log: () => undefined } as const;
/** Room for one batch's Gram, two keys' co-moments and their finish (plus a little): 6 keys → 3 passes. */
const twoKeysGb = (gramTransientBytes(WIDTH, MAX_TOKENS, 'float32') + correlationMemoryBytes(WIDTH, 2) + finishScratchBytes([{ width: WIDTH }, { width: WIDTH }]) + 1000) / GiB;

function pipeline(name: string, correlationGb: number, extra: string[] = []) {
  return yamlPipeline(root, name, [
    'model: demo',
    'precisions: [fp32, nf4]',
    'dataset: {path: demo, limit: 24}',
    'layers: [first, middle, last]',
    `batch: {max_tokens: ${MAX_TOKENS}, max_examples: 8}`,
    'measure: [predictions, neurons, dead, correlation]',
    `correlation: {memory_budget_gb: ${correlationGb}}`,
    `output: ${path.join(root, name)}`,
    ...extra,
  ]);
}

const summaryOf = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8'));

async function sameTables(a: string, b: string, tables: string[]) {
  for (const t of tables) assert.equal(await tableDifferences(a, b, t, TABLE_KEYS[t], 0, { exactOrder: true }), [], `${t}: ${a} vs ${b}`);
  assert.equal(summaryOf(b).correlation, summaryOf(a).correlation, 'summary.correlation');
}

/** Every co-moment entry of a shard folder's binary state, read back in full. */
function shardCoMoments(dir: string): Map<string, { n: number; values: Float64Array }> {
  const st = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8'));
  const out = new Map<string, { n: number; values: Float64Array }>();
  for (const e of st.states.correlation.entries as CoMomentFileEntry[]) {
    const r = new CoMomentReader(path.join(dir, e.file));
    const v = r.vectors(e.offset, e.width);
    const upper: number[] = [];
    r.upperSlices(e.offset, e.width, (s) => upper.push(...s));
    r.close();
    out.set(`${e.precision}/${e.layer}`, { n: e.n, values: Float64Array.from([...v.mean, ...v.min, ...v.max, ...upper]) });
  }
  return out;
}

const single = pipeline('single', 4);
const multi = pipeline('multi', twoKeysGb);

test('a tiny correlation budget runs 3 passes whose results equal the single pass exactly', async () => {
  const a = await runPipeline(single.cfg(), quiet);
  const b = await runPipeline(multi.cfg(), quiet);
  const sa = summaryOf(a.outDir), sb = summaryOf(b.outDir);
  assert.is(sa.correlation_passes.count, 1);
  assert.is(sb.correlation_passes.count, 3);
  // Precision by precision, layer by layer: the middle pass needs both precisions, the others one.
  assert.equal(sb.correlation_passes.passes.map((p: { precisions: string[] }) => p.precisions), [['fp32'], ['fp32', 'nf4'], ['nf4']]);
  assert.equal(sb.correlation_passes.passes[2].layers, [2, 3]);
  assert.is(sb.correlation_passes.extra_pass_seconds.length, 2);
  assert.is(sb.correlation.length, 6);
  await sameTables(a.outDir, b.outDir, ['correlation', 'predictions', 'neurons', 'dead']);
  assert.not.ok(existsSync(path.join(b.outDir, 'state')), 'no state folder left');
});

test('binary shard states: multi-pass co-moments equal the single pass within 1e-12; merge gives the same tables', async () => {
  const a = await runPipeline(pipeline('single-shard', 4).cfg(), { ...quiet, shard: { index: 0, count: 1 } });
  const b = await runPipeline(pipeline('multi-shard', twoKeysGb).cfg(), { ...quiet, shard: { index: 0, count: 1 } });
  const ca = shardCoMoments(a.outDir), cb = shardCoMoments(b.outDir);
  assert.equal([...cb.keys()].sort(), [...ca.keys()].sort());
  assert.is(ca.size, 6);
  for (const [k, x] of ca) {
    const y = cb.get(k)!;
    assert.is(y.n, x.n, `${k} count`);
    assert.is(y.values.length, 3 * WIDTH + (WIDTH * (WIDTH + 1)) / 2);
    let worst = 0;
    for (let i = 0; i < x.values.length; i++) worst = Math.max(worst, Math.abs(x.values[i] - y.values[i]) / Math.max(1, Math.abs(x.values[i])));
    assert.ok(worst <= 1e-12, `${k}: co-moments differ by ${worst}`);
  }
  // The multi-pass shard's retired passes are files of their own, linked out of its state folder.
  const files = new Set((JSON.parse(readFileSync(path.join(b.outDir, 'state.json'), 'utf8')).states.correlation.entries as CoMomentFileEntry[]).map((e) => e.file));
  assert.equal([...files].sort(), ['correlation-pass1.f64', 'correlation-pass2.f64', 'correlation-pass3.f64']);
  const merged = await mergeShards([b.outDir], { output: path.join(root, 'merged'), report: false, log: () => undefined });
  const reference = path.join(root, 'single');
  await sameTables(reference, merged.outDir, ['correlation', 'neurons', 'dead']);
});

test('killed after its second pass, a multi-pass run resumes at the third and gives the same result', () => {
  const p = pipeline('killed', twoKeysGb, ['checkpoint_every: 1000']);
  const env = { QUANTLENS_CACHE: cache };
  // Boundary checkpoints only (checkpoint_every exceeds the batch count): the 2nd follows pass 2.
  const killed = runCli(['run', p.file, '--quiet'], { env: { ...env, QUANTLENS_FAULT: 'kill:checkpoint.json:renamed:2' } });
  assert.ok(killed.code !== 0, 'killed');
  const ck = JSON.parse(readFileSync(path.join(root, 'killed', 'state', 'checkpoint.json'), 'utf8'));
  assert.is(ck.correlationPass, 2);
  assert.is(ck.states.correlation.finished.length, 4);
  const resumed = runCli(['run', p.file, '--resume', '--quiet'], { env });
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /correlation pass 3\/3/);
  assert.not.match(resumed.stderr, /correlation pass 2\/3/);
  return sameTables(path.join(root, 'single'), path.join(root, 'killed'), ['correlation', 'predictions', 'neurons', 'dead']);
});

test('killed inside an extra pass, a run resumes after the batches that pass had folded in', () => {
  const p = pipeline('killed-mid', twoKeysGb, ['checkpoint_every: 2']);
  const env = { QUANTLENS_CACHE: cache };
  // Checkpoints: main pass at batch 2, end of pass 1, pass 2 at its batch 2 (the 3rd), …
  const killed = runCli(['run', p.file, '--quiet'], { env: { ...env, QUANTLENS_FAULT: 'kill:checkpoint.json:renamed:3' } });
  assert.ok(killed.code !== 0, 'killed');
  const ck = JSON.parse(readFileSync(path.join(root, 'killed-mid', 'state', 'checkpoint.json'), 'utf8'));
  assert.equal([ck.correlationPass, ck.passBatches], [1, 2]);
  assert.ok(ck.batches > 2, `${ck.batches} batches: the kill must fall inside the pass`);
  assert.is(ck.states.correlation.finished.length, 2);
  assert.is(ck.states.correlation.entries.length, 2);
  const resumed = runCli(['run', p.file, '--resume', '--quiet'], { env });
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /correlation pass 2\/3/);
  return sameTables(path.join(root, 'single'), path.join(root, 'killed-mid'), ['correlation', 'predictions', 'neurons', 'dead']);
});

test('validate shows the passes; a key that cannot fit alone is refused before any output, named with the excess', async () => {
  const v = runCli(['validate', multi.file], { env: { QUANTLENS_CACHE: cache } });
  assert.is(v.code, 0, v.stderr);
  assert.match(v.stdout, /correlation passes over the dataset: 3/);
  const tiny = pipeline('tiny', correlationMemoryBytes(WIDTH, 1) / GiB);
  const err = await expectRejects(runPipeline(tiny.cfg(), quiet), { code: 'BUDGET' });
  assert.match(err.message, /^tiny\.yaml: correlation\.memory_budget_gb: correlation of fp32 layer 0 \(width 192\) needs [\d.]+ [KM]iB .*, [\d.]+ [KM]iB over the [\d.]+ KiB left for correlation \(correlation\.memory_budget_gb\)/);
  assert.not.ok(err.message.includes('\n'));
  assert.not.ok(existsSync(path.join(root, 'tiny')), 'no output folder');
});

test.run();
