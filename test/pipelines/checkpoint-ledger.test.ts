/**
 * The checkpoint's ledger is incremental (pipelines/ledger.ts): each checkpoint writes one file
 * with only the examples since the previous one, so its write does not grow with the examples
 * already recorded; listed files are never rewritten; a resumed run's ledger (ids and lengths)
 * equals an uninterrupted run's; a ledger file written but not yet listed (a kill before
 * checkpoint.json's rename) does not break the next resume.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runPipeline } from '../../pipelines/run.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { runCli, yamlPipeline } from '../helpers/pipeline.ts';
import { tempDir } from '../helpers/temp.ts';

const root = tempDir('ql-ledger-');
const quiet = { quiet: true, report: false, log: () => undefined } as const;

function dataset(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ prompt: `is thing ${(i * 7) % 13} ${'very '.repeat(i % 5)}big`, gold: i % 3 ? 'True' : 'False' }));
  const file = path.join(root, `data-${n}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function pipeline(name: string, rows: number, every: number, maxExamples = 8) {
  return yamlPipeline(root, name, [
    'model: demo',
    `dataset: {path: ${dataset(rows)}}`,
    `batch: {max_examples: ${maxExamples}, window: 32}`,
    'measure: [predictions, neurons]',
    `checkpoint_every: ${every}`,
    `output: ${path.join(root, name)}`,
  ]);
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const ledgerFiles = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('ledger-')).sort();

/** Runs `p` (optionally resuming), throwing after `crashAfter` inferred batches. */
async function crashAfter(p: ReturnType<typeof pipeline>, batches: number, opts: { resume?: boolean; shard?: { index: number; count: number } } = {}): Promise<void> {
  let n = 0;
  await runPipeline(p.cfg(), { ...quiet, ...opts, onBatch: () => { if (++n === batches) throw new Error('crash'); } }).then(
    () => assert.unreachable('the run finished'),
    (e) => assert.is((e as Error).message, 'crash'),
  );
}

test('each checkpoint writes only its own examples: checkpoint.json (less its file list) and the newest ledger file do not grow with the run', async () => {
  const p = pipeline('sizes', 480, 1, 16);
  const state = path.join(root, 'sizes', 'state');
  const seen: { json: number; list: number; newest: number; batch: number }[] = [];
  await runPipeline(p.cfg(), {
    ...quiet,
    onBatch: (r) => {
      const text = readFileSync(path.join(state, 'checkpoint.json'), 'utf8');
      const ck = JSON.parse(text);
      assert.not.ok('ids' in ck.ledger.examples, 'no inline ids');
      const files = ck.ledger.examples.files;
      const newest = files[files.length - 1];
      assert.is(statSync(path.join(state, newest.file)).size, newest.bytes);
      seen.push({ json: Buffer.byteLength(text), list: Buffer.byteLength(JSON.stringify(files)), newest: newest.bytes, batch: r.batch.examples.length });
    },
  });
  assert.is(seen.length, 30);
  // The newest file holds the examples of the one batch since the previous checkpoint: 8 bytes each.
  for (const s of seen) assert.is(s.newest, 8 * s.batch);
  // What remains of checkpoint.json without its list of files stays the same size (a few bytes of
  // counters' digits); inline base64 ids and lengths would add ~170 bytes a checkpoint here (~5 KB).
  const rest = seen.map((s) => s.json - s.list);
  assert.ok(Math.max(...rest) - Math.min(...rest) < 120, `checkpoint.json less its list: ${Math.min(...rest)}–${Math.max(...rest)} bytes`);
  // The list grows by one short entry a checkpoint, whatever the batch size.
  for (let k = 1; k < seen.length; k++) assert.ok(seen[k].list - seen[k - 1].list < 160, `list entry ${seen[k].list - seen[k - 1].list} bytes`);
});

test("a resumed run's ledger equals an uninterrupted run's (ids and lengths), and listed ledger files are never rewritten", async () => {
  const shard = { index: 0, count: 2 };
  const single = pipeline('ledger-single', 240, 3);
  await runPipeline(single.cfg(), { ...quiet, shard });
  const p = pipeline('ledger-resumed', 240, 3);
  const out = path.join(root, 'ledger-resumed', 'shard-0-of-2');
  const state = path.join(out, 'state');
  await crashAfter(p, 7, { shard }); // checkpoints after batches 3 and 6
  const first = ledgerFiles(state);
  assert.is(first.length, 2);
  const hashes = first.map((f) => sha(path.join(state, f)));
  await crashAfter(p, 5, { shard, resume: true }); // batches 7–11: a checkpoint after batch 9
  const ck = JSON.parse(readFileSync(path.join(state, 'checkpoint.json'), 'utf8'));
  assert.is(ck.batches, 9);
  const listed = ck.ledger.examples.files.map((f: { file: string }) => f.file);
  assert.is(listed.length, 3);
  assert.equal(listed.slice(0, 2), first, 'the first session’s files stay listed');
  assert.equal(first.map((f) => sha(path.join(state, f))), hashes, 'and unchanged');
  // Contiguous: each file starts where the one before it ends.
  for (let k = 1; k < listed.length; k++) assert.is(listed[k].split('-')[1], listed[k - 1].split('-')[2].replace('.i32', ''));
  await runPipeline(p.cfg(), { ...quiet, shard, resume: true });
  const ledger = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')).ledger.examples;
  const reference = ledger(path.join(root, 'ledger-single', 'shard-0-of-2'));
  assert.ok(reference.ids.length > 100, 'the reference has examples');
  assert.equal(ledger(out), reference);
});

test('a ledger file written but not listed (killed before checkpoint.json was renamed) is removed by the resume, which finishes like an uninterrupted run', async () => {
  const reference = pipeline('unlisted-reference', 96, 2);
  await runPipeline(reference.cfg(), quiet);
  const p = pipeline('unlisted', 96, 2);
  const state = path.join(root, 'unlisted', 'state');
  const killed = runCli(['run', p.file, '--quiet', '--no-report'], { env: { QUANTLENS_FAULT: 'kill:ledger-:renamed:2' } });
  assert.ok(killed.code !== 0, 'killed');
  const ck = JSON.parse(readFileSync(path.join(state, 'checkpoint.json'), 'utf8'));
  assert.is(ck.batches, 2, 'checkpoint.json is still the first');
  const files = ledgerFiles(state);
  assert.is(files.length, 2, 'the second ledger file is in place');
  assert.equal(ck.ledger.examples.files.map((f: { file: string }) => f.file), [files[0]], 'but not listed');
  await crashAfter(p, 1, { resume: true }); // resumed, then stopped before its next checkpoint
  assert.equal(ledgerFiles(state), [files[0]], 'the unlisted file is removed');
  await runPipeline(p.cfg(), { ...quiet, resume: true });
  assert.not.ok(existsSync(state), 'state folder removed at the end');
  for (const t of ['predictions', 'neurons']) assert.equal(await tableDifferences(path.join(root, 'unlisted'), path.join(root, 'unlisted-reference'), t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' }), [], t);
});

test.run();
