/**
 * Resume and merge refuse what they cannot continue: a checkpoint from a changed dataset,
 * pipeline or model, or one that is corrupt or inconsistent, and shard states with missing or
 * corrupt fields — each one STATE line naming the file (and the field or what changed), never a
 * JS TypeError; the refusal keeps the checkpoint so the user can decide.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, existsSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { caseDir, expectError, quiet } from './harness.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { mergeShards } from '../../pipelines/merge.ts';
import { INCOMPLETE_MARKER } from '../../pipelines/output-folder.ts';

function dataset(n: number, seed = 1): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ prompt: `is thing ${(i * 7 + seed) % 13} ${'very '.repeat(i % 4)}big`, gold: i % 3 ? 'True' : 'False' }));
  return lines.join('\n') + '\n';
}

const yaml = (extra = '') =>
  ['model: demo', 'dataset:', '  path: d.jsonl', 'batch: {max_examples: 4, window: 16}', 'measure: [predictions, neurons, dead, correlation]', 'checkpoint_every: 2', 'output: out', extra].join('\n') + '\n';

/** A run over 40 rows that fails after 5 batches: a checkpoint after batch 4 remains. */
async function crashedRun(extra = ''): Promise<{ dir: string; file: string; ck: string }> {
  const dir = caseDir({ 'd.jsonl': dataset(40), 'p.yaml': yaml(extra) });
  const file = path.join(dir, 'p.yaml');
  // A whole-second mtime, so a test can restore it exactly after editing the file.
  utimesSync(path.join(dir, 'd.jsonl'), WHOLE_SECOND, WHOLE_SECOND);
  let n = 0;
  await runPipeline(parsePipeline(yaml(extra), file), { ...quiet, onBatch: () => { if (++n === 5) throw new Error('crash'); } }).catch((e) => assert.is(e.message, 'crash'));
  const ck = path.join(dir, 'out', 'state', 'checkpoint.json');
  assert.ok(existsSync(ck), 'a checkpoint remains');
  assert.ok(existsSync(path.join(dir, 'out', INCOMPLETE_MARKER)), 'the folder is marked incomplete');
  return { dir, file, ck };
}

const WHOLE_SECOND = 1_700_000_000;

const resume = (file: string, extra = '') => runPipeline(parsePipeline(yaml(extra), file), { ...quiet, resume: true });

function editCheckpoint(ck: string, edit: (c: any) => void): void {
  const c = JSON.parse(readFileSync(ck, 'utf8'));
  edit(c);
  writeFileSync(ck, JSON.stringify(c));
}

const CHECKPOINT_CASES: { name: string; change: (r: { dir: string; ck: string }) => void; error: RegExp }[] = [
  {
    name: 'dataset content changed, same size and mtime',
    change: ({ dir }) => {
      const d = path.join(dir, 'd.jsonl');
      writeFileSync(d, readFileSync(d, 'utf8').replace('"gold":"True"', '"gold":"Txue"'));
      utimesSync(d, WHOLE_SECOND, WHOLE_SECOND);
    },
    error: /checkpoint\.json: the dataset's rows in the first 4 batches differ from those the checkpoint consumed/,
  },
  { name: 'dataset grew', change: ({ dir }) => writeFileSync(path.join(dir, 'd.jsonl'), dataset(41)), error: /checkpoint\.json: the dataset .*d\.jsonl changed since the checkpoint \(size \d+ → \d+ bytes\)/ },
  {
    name: 'dataset touched',
    change: ({ dir }) => utimesSync(path.join(dir, 'd.jsonl'), new Date(), new Date(Date.now() + 5000)),
    error: /checkpoint\.json: the dataset .*d\.jsonl was modified since the checkpoint \(mtime /,
  },
  { name: 'checkpoint not JSON', change: ({ ck }) => writeFileSync(ck, '{"format": '), error: /checkpoint\.json: checkpoint is not valid JSON/ },
  {
    name: 'checkpoint of the previous format (ledger files listed)',
    change: ({ ck }) => editCheckpoint(ck, (c) => (c.format = 'quantlens-checkpoint/4')),
    error: /checkpoint\.json: not a quantlens checkpoint of this version \(format quantlens-checkpoint\/4, this quantlens reads quantlens-checkpoint\/5\); run without --resume to start over$/,
  },
  { name: 'another quantlens version', change: ({ ck }) => editCheckpoint(ck, (c) => (c.fingerprint.version = '0.0.1')), error: /checkpoint\.json: it was written by quantlens 0\.0\.1/ },
  { name: 'another model', change: ({ ck }) => editCheckpoint(ck, (c) => (c.fingerprint.model = 'f'.repeat(64))), error: /checkpoint\.json: checkpoint belongs to a different pipeline or model: the model changed/ },
  { name: 'more batches than the dataset has', change: ({ ck }) => editCheckpoint(ck, (c) => ((c.batches = 4000), (c.parts = 2))), error: /checkpoint\.json: checkpoint claims 4000 batches, but the dataset now gives only 10/ },
  { name: 'negative batches', change: ({ ck }) => editCheckpoint(ck, (c) => (c.batches = -1)), error: /checkpoint\.json: batches is -1, not an integer/ },
  { name: 'more parts than batches', change: ({ ck }) => editCheckpoint(ck, (c) => (c.parts = 99)), error: /checkpoint\.json: parts is 99, not an integer in \[0, 4\]/ },
  { name: 'a listed part missing', change: ({ ck }) => rmSync(path.join(path.dirname(ck), 'predictions-1.parquet')), error: /checkpoint\.json: checkpoint lists predictions-1\.parquet, which is missing/ },
  { name: 'states missing', change: ({ ck }) => editCheckpoint(ck, (c) => delete c.states), error: /checkpoint\.json: states is missing or not an object/ },
  { name: 'neurons state missing', change: ({ ck }) => editCheckpoint(ck, (c) => delete c.states.neurons), error: /checkpoint\.json: states\.neurons is missing/ },
  { name: 'neurons state corrupt', change: ({ ck }) => editCheckpoint(ck, (c) => (c.states.neurons = { layers: 'x' })), error: /checkpoint\.json: states\.neurons\.entries is missing or not a list/ },
  { name: 'neurons entries missing', change: ({ ck }) => editCheckpoint(ck, (c) => (c.states.neurons.entries = [])), error: /checkpoint\.json: states\.neurons\.entries has 0 entries, expected 3/ },
  { name: 'correlation entries missing', change: ({ ck }) => editCheckpoint(ck, (c) => c.states.correlation.entries.pop()), error: /checkpoint\.json: states\.correlation\.entries has 2 entries, expected 3/ },
  { name: 'correlation state corrupt', change: ({ ck }) => editCheckpoint(ck, (c) => (c.states.correlation.entries[0] = { nope: 1 })), error: /checkpoint\.json: states: estimator states cannot be merged/ },
  // The ledger's fields (its files' contents: test/pipelines/checkpoint-ledger.test.ts). Batches of 4, a checkpoint every 2: 16 examples in 2 files.
  { name: 'more ledger files than examples', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.examples.files = 17)), error: /checkpoint\.json: ledger\.examples\.files is 17, not an integer in \[0, 16\]/ },
  { name: 'ledger examples without files', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.examples.files = 0)), error: /checkpoint\.json: ledger\.examples\.files is 0, but the ledger has 16 examples/ },
  { name: 'ledger chain not a SHA-256', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.examples.chain = 'abc')), error: /checkpoint\.json: ledger\.examples\.chain is missing or not a SHA-256 in hex/ },
  { name: 'ledger count disagrees with the tallies', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.examples.count = 15)), error: /checkpoint\.json: ledger\.tally\.fp32\.examples is 16, but the ledger lists 15 examples/ },
  { name: 'tally disagrees with the ledger', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.tally.fp32.examples = 3)), error: /checkpoint\.json: ledger\.tally\.fp32\.examples is 3, but the ledger lists 16 examples/ },
  { name: 'tally of a foreign precision', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.tally.nf4 = c.ledger.tally.fp32)), error: /checkpoint\.json: ledger\.tally\.nf4 is a precision this run does not have/ },
  { name: 'seconds NaN', change: ({ ck }) => editCheckpoint(ck, (c) => (c.ledger.seconds = 'NaN')), error: /checkpoint\.json: ledger\.seconds is "NaN", not a non-negative number/ },
];

for (const c of CHECKPOINT_CASES) {
  test(`resume refuses: ${c.name}`, async () => {
    const r = await crashedRun();
    c.change(r);
    await expectError(() => resume(r.file), c.error);
    if (existsSync(r.ck)) assert.ok(existsSync(path.join(r.dir, 'out', INCOMPLETE_MARKER)), 'a kept checkpoint keeps the folder marked');
    assert.not.ok(existsSync(path.join(r.dir, 'out', 'predictions.parquet')));
  });
}

test('resume refuses a changed pipeline, naming what changed', async () => {
  const r = await crashedRun();
  await expectError(() => resume(r.file, 'dead: {lo: -0.2, hi: 0.2}'), /checkpoint\.json: checkpoint belongs to a different pipeline or model: the pipeline changed/);
});

test('after a refusal, a run without --resume starts over and leaves a complete, unmarked folder', async () => {
  const r = await crashedRun();
  writeFileSync(path.join(r.dir, 'd.jsonl'), dataset(41));
  await expectError(() => resume(r.file), /changed since the checkpoint/);
  await runPipeline(parsePipeline(yaml(), r.file), quiet);
  assert.not.ok(existsSync(path.join(r.dir, 'out', INCOMPLETE_MARKER)));
  assert.not.ok(existsSync(path.join(r.dir, 'out', 'state')));
  assert.is(JSON.parse(readFileSync(path.join(r.dir, 'out', 'summary.json'), 'utf8')).dataset.examples, 41);
});

// ---------------------------------------------------------------------------------------------
// Shard states.

async function shards(): Promise<{ dir: string; dirs: string[] }> {
  const dir = caseDir({ 'd.jsonl': dataset(24), 'p.yaml': yaml() });
  const file = path.join(dir, 'p.yaml');
  const dirs: string[] = [];
  for (let i = 0; i < 2; i++) dirs.push((await runPipeline(parsePipeline(yaml(), file), { ...quiet, shard: { index: i, count: 2 } })).outDir);
  return { dir, dirs };
}

function editState(dir: string, edit: (s: any) => void): void {
  const f = path.join(dir, 'state.json');
  const s = JSON.parse(readFileSync(f, 'utf8'));
  edit(s);
  writeFileSync(f, JSON.stringify(s));
}

const SHARD_CASES: { name: string; change: (dirs: string[]) => void; error: RegExp }[] = [
  { name: 'a state file without states', change: ([d]) => editState(d, (s) => delete s.states), error: /shard-0-of-2\/state\.json: states is missing or not an object/ },
  { name: 'a state without its ledger', change: ([d]) => editState(d, (s) => delete s.ledger), error: /shard-0-of-2\/state\.json: ledger is missing/ },
  { name: 'examples.ids not base64', change: ([d]) => editState(d, (s) => (s.ledger.examples.ids = '%%%')), error: /shard-0-of-2\/state\.json: ledger\.examples\.ids is not base64 int32/ },
  { name: 'corrupt neurons state', change: ([d]) => editState(d, (s) => (s.states.neurons.entries[0].moments.mean = 7)), error: /shard-0-of-2\/state\.json: states: estimator states cannot be merged/ },
  { name: 'shard index out of range', change: ([d]) => editState(d, (s) => (s.shard.index = 5)), error: /shard-0-of-2\/state\.json: shard\.index is 5, not an integer in \[0, 1\]/ },
  { name: 'pipeline metadata not JSON', change: ([d]) => editState(d, (s) => (s.metadata['quantlens.pipeline'] = '{')), error: /shard-0-of-2\/state\.json: metadata\.quantlens\.pipeline is not JSON/ },
  { name: 'predictions.parquet not Parquet', change: ([d]) => writeFileSync(path.join(d, 'predictions.parquet'), 'not parquet'), error: /shard-0-of-2\/predictions\.parquet: cannot read predictions/ },
  { name: 'a shard folder still marked incomplete', change: ([d]) => writeFileSync(path.join(d, INCOMPLETE_MARKER), ''), error: /shard-0-of-2: folder is incomplete \(INCOMPLETE present/ },
  { name: 'an incomplete set', change: ([, d]) => rmSync(d, { recursive: true }), error: /incomplete shard set: missing shard-1-of-2|no state\.json/ },
];

for (const c of SHARD_CASES) {
  test(`merge refuses: ${c.name}`, async () => {
    const { dir, dirs } = await shards();
    c.change(dirs);
    const given = c.name === 'an incomplete set' ? dirs.slice(0, 1) : dirs;
    await expectError(() => mergeShards(given, { report: false, log: () => undefined }), c.error);
    for (const f of ['predictions.parquet', 'summary.json', INCOMPLETE_MARKER]) assert.not.ok(existsSync(path.join(dir, 'out', f)), `no ${f} after a refused merge`);
  });
}

test('a merge into a folder holding an older result replaces it as one unit', async () => {
  const { dir, dirs } = await shards();
  const out = path.join(dir, 'out');
  writeFileSync(path.join(out, 'agreement.parquet'), 'from an older run with agreement');
  cpSync(path.join(dirs[0], 'neurons.parquet'), path.join(out, 'salience.parquet'));
  await mergeShards(dirs, { report: false, log: () => undefined });
  assert.not.ok(existsSync(path.join(out, 'agreement.parquet')), 'old results removed');
  assert.not.ok(existsSync(path.join(out, 'salience.parquet')), 'old results removed');
  assert.ok(existsSync(path.join(out, 'summary.json')));
  assert.not.ok(existsSync(path.join(out, INCOMPLETE_MARKER)));
});

test.run();
