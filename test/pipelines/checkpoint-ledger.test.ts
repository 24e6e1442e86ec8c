/**
 * The checkpoint's ledger is incremental (pipelines/ledger.ts, ledger-chain.ts): each checkpoint
 * writes one file with only the examples since the previous one, and checkpoint.json records
 * only the file count, the example count and the end of a SHA-256 chain through the files, so
 * neither grows with the run; recorded files are never rewritten; a resumed run's ledger (ids and
 * lengths) equals an uninterrupted run's; a ledger file written but not yet recorded (a kill
 * before checkpoint.json's rename) does not break the next resume; a missing, short, long,
 * changed, reordered or extra ledger file, or a chain that is not the checkpoint's, is refused in
 * one line naming the file.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runPipeline } from '../../pipelines/run.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { runCli, yamlPipeline } from '../helpers/pipeline.ts';
import { tempDir } from '../helpers/temp.ts';
import { expectRejects } from '../helpers/expect-error.ts';

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

/** The ledger files of a state folder, in example order. */
function ledgerFiles(dir: string): string[] {
  const from = (f: string) => Number(f.split('-')[1]);
  return readdirSync(dir).filter((f) => f.startsWith('ledger-')).sort((a, b) => from(a) - from(b));
}

/**
 * The chain through a state folder's ledger files, computed here from the layout alone (each
 * file: ids, lengths, then H_k = SHA-256(H_(k-1), SHA-256(ids and lengths), from and to as u64
 * LE)), checking that the files tile [0, n) and that each ends with its chain value.
 */
function bruteChain(dir: string): { chain: string; examples: number; files: number } {
  let h = createHash('sha256').update('quantlens-ledger-chain/1').digest();
  let at = 0;
  const files = ledgerFiles(dir);
  for (const f of files) {
    const [from, to] = f.replace('.i32', '').split('-').slice(1).map(Number);
    assert.is(from, at, `${f} starts where the one before it ends`);
    const b = readFileSync(path.join(dir, f));
    const payload = 8 * (to - from);
    assert.is(b.length, payload + 32, `${f}: two int32 an example, then 32 bytes`);
    const range = new DataView(new ArrayBuffer(16));
    range.setBigUint64(0, BigInt(from), true);
    range.setBigUint64(8, BigInt(to), true);
    h = createHash('sha256').update(Buffer.concat([h, createHash('sha256').update(b.subarray(0, payload)).digest(), new Uint8Array(range.buffer)])).digest();
    assert.ok(h.equals(b.subarray(payload)), `${f} ends with its chain value`);
    at = to;
  }
  return { chain: h.toString('hex'), examples: at, files: files.length };
}

/** Runs `p` (optionally resuming), throwing after `crashAfter` inferred batches. */
async function crashAfter(p: ReturnType<typeof pipeline>, batches: number, opts: { resume?: boolean; shard?: { index: number; count: number } } = {}): Promise<void> {
  let n = 0;
  await runPipeline(p.cfg(), { ...quiet, ...opts, onBatch: () => { if (++n === batches) throw new Error('crash'); } }).then(
    () => assert.unreachable('the run finished'),
    (e) => assert.is((e as Error).message, 'crash'),
  );
}

test('each checkpoint writes only its own examples, and checkpoint.json does not grow with the number of checkpoints', async () => {
  const p = pipeline('sizes', 480, 1, 16);
  const state = path.join(root, 'sizes', 'state');
  const seen: { json: number; ledger: number; newest: number; batch: number }[] = [];
  await runPipeline(p.cfg(), {
    ...quiet,
    onBatch: (r) => {
      const text = readFileSync(path.join(state, 'checkpoint.json'), 'utf8');
      const ck = JSON.parse(text);
      assert.not.ok('ids' in ck.ledger.examples, 'no inline ids');
      // What checkpoint.json records is the chain recomputed independently over the files in the folder.
      const brute = bruteChain(state);
      assert.equal(ck.ledger.examples, { count: brute.examples, files: brute.files, chain: brute.chain });
      const files = ledgerFiles(state);
      seen.push({ json: Buffer.byteLength(text), ledger: Buffer.byteLength(JSON.stringify(ck.ledger.examples)), newest: statSync(path.join(state, files[files.length - 1])).size, batch: r.batch.examples.length });
    },
  });
  assert.is(seen.length, 30);
  // The newest file holds the examples of the one batch since the previous checkpoint: 8 bytes each, and the chain value.
  for (const s of seen) assert.is(s.newest, 8 * s.batch + 32);
  // The ledger's record changes only in its counts' digits (1–2 for files, 2–3 for examples) ...
  const ledger = seen.map((s) => s.ledger);
  assert.ok(Math.max(...ledger) - Math.min(...ledger) <= 3, `ledger.examples: ${Math.min(...ledger)}–${Math.max(...ledger)} bytes`);
  // ... and all of checkpoint.json by a few bytes of counters' digits, where a listing of the
  // files would add ~140 bytes a checkpoint (~4 KB over these 30).
  const json = seen.map((s) => s.json);
  assert.ok(Math.max(...json) - Math.min(...json) < 120, `checkpoint.json: ${Math.min(...json)}–${Math.max(...json)} bytes`);
});

test("a resumed run's ledger equals an uninterrupted run's (ids and lengths), and recorded ledger files are never rewritten", async () => {
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
  const files = ledgerFiles(state);
  assert.is(ck.ledger.examples.files, 3);
  assert.equal(files.slice(0, 2), first, 'the first session’s files stay');
  assert.equal(first.map((f) => sha(path.join(state, f))), hashes, 'unchanged');
  // Contiguous, each ending with its chain value, the last with checkpoint.json's.
  assert.equal(bruteChain(state), { chain: ck.ledger.examples.chain, examples: ck.ledger.examples.count, files: 3 });
  await runPipeline(p.cfg(), { ...quiet, shard, resume: true });
  const ledger = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')).ledger.examples;
  const reference = ledger(path.join(root, 'ledger-single', 'shard-0-of-2'));
  assert.ok(reference.ids.length > 100, 'the reference has examples');
  assert.equal(ledger(out), reference);
});

test('a ledger file written but not recorded (killed before checkpoint.json was renamed) is removed by the resume, which finishes like an uninterrupted run', async () => {
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
  assert.is(ck.ledger.examples.files, 1, 'but not recorded');
  assert.is(files[1].split('-')[1], String(ck.ledger.examples.count), 'it starts where the recorded examples end');
  await crashAfter(p, 1, { resume: true }); // resumed, then stopped before its next checkpoint
  assert.equal(ledgerFiles(state), [files[0]], 'the unrecorded file is removed');
  await runPipeline(p.cfg(), { ...quiet, resume: true });
  assert.not.ok(existsSync(state), 'state folder removed at the end');
  for (const t of ['predictions', 'neurons']) assert.equal(await tableDifferences(path.join(root, 'unlisted'), path.join(root, 'unlisted-reference'), t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' }), [], t);
});

// ---------------------------------------------------------------------------------------------
// What resume refuses: a run of batches of 16 checkpointing every 2, stopped after batch 7, leaves
// ledger-0-16.i32, ledger-16-32.i32 and ledger-32-48.i32 (160 bytes each) and checkpoint.json.

const FILES = ['ledger-0-16.i32', 'ledger-16-32.i32', 'ledger-32-48.i32'];

async function stoppedRun(name: string): Promise<{ p: ReturnType<typeof pipeline>; state: string }> {
  const p = pipeline(name, 96, 2);
  const state = path.join(root, name, 'state');
  await crashAfter(p, 7);
  assert.equal(ledgerFiles(state), FILES, 'the three ledger files');
  for (const f of FILES) assert.is(statSync(path.join(state, f)).size, 160);
  return { p, state };
}

const flipByte = (file: string, at: number) => {
  const b = readFileSync(file);
  b[at < 0 ? b.length + at : at] ^= 1;
  writeFileSync(file, b);
};

const editCheckpoint = (state: string, edit: (ck: any) => void) => {
  const file = path.join(state, 'checkpoint.json');
  const ck = JSON.parse(readFileSync(file, 'utf8'));
  edit(ck);
  writeFileSync(file, JSON.stringify(ck));
};

const START_OVER = '; run without --resume to start over$';

const REFUSALS: { name: string; change: (state: string) => void; error: RegExp }[] = [
  { name: 'the first file missing', change: (s) => rmSync(path.join(s, FILES[0])), error: /state\/ledger-0-16\.i32: ledger file is missing: no file in the state folder holds examples 0 to 16 of the 48 in checkpoint\.json/ },
  { name: 'a middle file missing', change: (s) => rmSync(path.join(s, FILES[1])), error: /state\/ledger-16-32\.i32: ledger file is missing: no file in the state folder holds examples 16 to 32 of the 48 in checkpoint\.json/ },
  { name: 'the last file missing', change: (s) => rmSync(path.join(s, FILES[2])), error: /state\/ledger-32-48\.i32: ledger file is missing: no file in the state folder holds examples 32 to 48 of the 48 in checkpoint\.json/ },
  { name: 'a file truncated', change: (s) => truncateSync(path.join(s, FILES[1]), 156), error: /state\/ledger-16-32\.i32: ledger file has 156 bytes, truncated \(its name says 16 examples: 160 bytes\)/ },
  { name: 'a file too long', change: (s) => appendFileSync(path.join(s, FILES[2]), new Uint8Array(4)), error: /state\/ledger-32-48\.i32: ledger file has 164 bytes, too long \(its name says 16 examples: 160 bytes\)/ },
  { name: 'an id changed', change: (s) => flipByte(path.join(s, FILES[1]), 0), error: /state\/ledger-16-32\.i32: ledger file does not fit the ledger's SHA-256 chain at file 2 of 3 \(changed, replaced or moved since it was written\)/ },
  { name: 'a token length changed', change: (s) => flipByte(path.join(s, FILES[0]), 8 * 16 - 4), error: /state\/ledger-0-16\.i32: ledger file does not fit the ledger's SHA-256 chain at file 1 of 3 \(changed, replaced or moved since it was written\)/ },
  { name: 'a chain value changed', change: (s) => flipByte(path.join(s, FILES[2]), -1), error: /state\/ledger-32-48\.i32: ledger file does not fit the ledger's SHA-256 chain at file 3 of 3 \(changed, replaced or moved since it was written\)/ },
  {
    name: 'two files swapped (reordered)',
    change: (s) => {
      const [a, b] = [readFileSync(path.join(s, FILES[0])), readFileSync(path.join(s, FILES[1]))];
      writeFileSync(path.join(s, FILES[0]), b);
      writeFileSync(path.join(s, FILES[1]), a);
    },
    error: /state\/ledger-0-16\.i32: ledger file does not fit the ledger's SHA-256 chain at file 1 of 3 \(changed, replaced or moved since it was written\)/,
  },
  {
    name: 'an extra file overlapping a recorded one',
    change: (s) => copyFileSync(path.join(s, FILES[1]), path.join(s, 'ledger-8-24.i32')),
    error: /state\/ledger-8-24\.i32: ledger file overlaps ledger-0-16\.i32; it is not one of the files holding checkpoint\.json's examples/,
  },
  {
    name: 'an extra file starting where a recorded one does',
    change: (s) => copyFileSync(path.join(s, FILES[1]), path.join(s, 'ledger-16-24.i32')),
    error: /state\/ledger-16-32\.i32: ledger file overlaps ledger-16-24\.i32 \(both start at example 16\); only one of them can be the checkpoint's/,
  },
  {
    name: 'an extra file past the next checkpoint’s',
    change: (s) => copyFileSync(path.join(s, FILES[2]), path.join(s, 'ledger-64-80.i32')),
    error: /state\/ledger-64-80\.i32: ledger file starts past the 48 examples checkpoint\.json records \(only the next checkpoint's file, starting at 48, can be left by a kill\)/,
  },
  {
    name: 'an extra file running past the recorded examples',
    change: (s) => {
      rmSync(path.join(s, FILES[2]));
      copyFileSync(path.join(s, FILES[1]), path.join(s, 'ledger-32-64.i32'));
    },
    error: /state\/ledger-32-64\.i32: ledger file runs past the 48 examples checkpoint\.json records/,
  },
  {
    name: 'an empty range',
    change: (s) => copyFileSync(path.join(s, FILES[1]), path.join(s, 'ledger-20-20.i32')),
    error: /state\/ledger-20-20\.i32: ledger file holds no examples \(20 to 20\)/,
  },
  {
    name: 'two files merged into one',
    change: (s) => {
      const [a, b] = [readFileSync(path.join(s, FILES[0])), readFileSync(path.join(s, FILES[1]))];
      writeFileSync(path.join(s, 'ledger-0-32.i32'), Buffer.concat([a.subarray(0, 128), b.subarray(0, 128), b.subarray(128)]));
      rmSync(path.join(s, FILES[0]));
      rmSync(path.join(s, FILES[1]));
    },
    error: /state\/checkpoint\.json: records 3 ledger files, but the state folder's files holding its 48 examples are 2/,
  },
  {
    name: 'a chain that is not the files’',
    change: (s) => editCheckpoint(s, (ck) => (ck.ledger.examples.chain = 'ab'.repeat(32))),
    error: /state\/checkpoint\.json: ledger\.examples\.chain is abababababab…, but the ledger files up to ledger-32-48\.i32 chain to [0-9a-f]{12}… \(the files are not this checkpoint's\)/,
  },
];

for (const c of REFUSALS) {
  test(`resume refuses: ${c.name}, in one line naming the file`, async () => {
    const name = `refuse-${REFUSALS.indexOf(c)}`;
    const { p, state } = await stoppedRun(name);
    c.change(state);
    const e = await expectRejects(runPipeline(p.cfg(), { ...quiet, resume: true }), { code: 'STATE', message: new RegExp(c.error.source + START_OVER) });
    assert.ok(e.message.startsWith(state), `names a file in the state folder: ${e.message}`);
    assert.ok(existsSync(path.join(state, 'checkpoint.json')), 'the refusal keeps the checkpoint');
  });
}

test('resume refuses a checkpoint of format 4 (ledger files listed), saying which format it reads', async () => {
  const { p, state } = await stoppedRun('refuse-format-4');
  editCheckpoint(state, (ck) => (ck.format = 'quantlens-checkpoint/4'));
  await expectRejects(runPipeline(p.cfg(), { ...quiet, resume: true }), {
    code: 'STATE',
    message: /state\/checkpoint\.json: not a quantlens checkpoint of this version \(format quantlens-checkpoint\/4, this quantlens reads quantlens-checkpoint\/5\); run without --resume to start over$/,
  });
});

test('the same changes undone, the stopped run resumes (the refusals are not of the run itself)', async () => {
  const { p, state } = await stoppedRun('refuse-undone');
  const saved = readFileSync(path.join(state, FILES[1]));
  flipByte(path.join(state, FILES[1]), 0);
  await expectRejects(runPipeline(p.cfg(), { ...quiet, resume: true }), { code: 'STATE', message: /ledger-16-32\.i32: ledger file does not fit/ });
  writeFileSync(path.join(state, FILES[1]), saved);
  await runPipeline(p.cfg(), { ...quiet, resume: true });
  assert.not.ok(existsSync(state), 'finished: state folder removed');
});

test.run();
