/**
 * Resume: a run checkpoints every `checkpoint_every` batches; `--resume` skips the checkpointed
 * batches (read and tokenized, not inferred), restores the estimator states and keeps the
 * predictions part files. Killed anywhere (SIGKILL), it must finish with the same outputs as an
 * uninterrupted run: every Parquet table equal (predictions in the same row order).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { isQuantlensError } from '../../core/errors.ts';
import { tableDifferences, TABLE_KEYS } from '../helpers/run-tables.ts';
import { tempDir } from '../helpers/temp.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const quiet = { quiet: true, report: false, log: () => undefined } as const;
const TABLES = ['predictions', 'neurons', 'dead', 'correlation', 'calibration'];
const root = tempDir('ql-resume-');

/** A JSONL of `n` True/False prompts of varied length (so batches differ in shape). */
function writeDataset(n: number): string {
  const subjects = ['the sun', 'water', 'a fish', 'the moon', 'a cat', 'ice', 'a tree', 'the sea', 'fire', 'a bird'];
  const props = ['hot', 'wet', 'alive', 'a star', 'cold', 'green', 'blue', 'bright', 'heavy', 'round'];
  const lines: string[] = [];
  let x = 12345;
  const next = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < n; i++) {
    const parts = Array.from({ length: 1 + Math.floor(next() * 4) }, () => `is ${subjects[Math.floor(next() * 10)]} ${props[Math.floor(next() * 10)]}`);
    lines.push(JSON.stringify({ prompt: parts.join(' and '), gold: next() < 0.5 ? 'True' : 'False' }));
  }
  const file = path.join(root, `data-${n}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function pipelineYaml(name: string, data: string, checkpointEvery: number): { file: string; text: string } {
  const text = [
    `name: ${name}`,
    'model: demo',
    'precisions: [fp32]',
    'dataset:',
    `  path: ${data}`,
    '  prompt: "Respond with True or False only.\\n{prompt}\\nAnswer:"',
    '  gold: gold',
    'layers: [first, middle, last]',
    'batch: {max_examples: 16, window: 64}',
    'measure: [predictions, neurons, calibration, dead, correlation]',
    'calibration: {bootstrap: 100}',
    `checkpoint_every: ${checkpointEvery}`,
    `output: ${path.join(root, name)}`,
  ].join('\n');
  const file = path.join(root, `${name}.yaml`);
  writeFileSync(file, text + '\n');
  return { file, text };
}

async function sameOutputs(dir: string, reference: string): Promise<void> {
  for (const t of TABLES) {
    const diffs = await tableDifferences(dir, reference, t, TABLE_KEYS[t], 1e-9, { exactOrder: t === 'predictions' });
    assert.equal(diffs, [], `${t}: ${diffs.join('; ')}`);
  }
  assert.not.ok(existsSync(path.join(dir, 'state')), 'state folder removed at the end');
  const leftovers = readdirSync(dir).filter((f) => f.startsWith('.'));
  assert.equal(leftovers, [], 'no temporaries left');
}

/** The uninterrupted run, beside the tested one; returns its folder and its number of batches. */
async function referenceRun(p: { file: string; text: string }): Promise<{ dir: string; batches: number }> {
  const cfg = parsePipeline(p.text, p.file);
  cfg.output = cfg.output + '-reference';
  let batches = 0;
  const dir = (await runPipeline(cfg, { ...quiet, onBatch: () => void batches++ })).outDir;
  return { dir, batches };
}

test('in process: a run that fails after 7 batches resumes from its checkpoint and skips inference of done batches', async () => {
  const data = writeDataset(160);
  const p = pipelineYaml('crash', data, 3);
  const { text } = p;
  const { dir: reference, batches: refBatches } = await referenceRun(p);
  const cfg = () => parsePipeline(text, p.file);

  let seen = 0;
  let crashed = false;
  try {
    await runPipeline(cfg(), {
      ...quiet,
      onBatch: () => {
        if (++seen === 7) throw new Error('simulated crash');
      },
    });
  } catch (e) {
    crashed = (e as Error).message === 'simulated crash';
  }
  assert.ok(crashed, 'the run failed');
  const out = cfg().output;
  const ck = JSON.parse(readFileSync(path.join(out, 'state', 'checkpoint.json'), 'utf8'));
  assert.is(ck.batches, 6, 'last checkpoint after batch 6');
  assert.is(ck.parts, 2);
  assert.not.ok(existsSync(path.join(out, 'predictions.parquet')));

  // A checkpoint from another pipeline is refused, and kept.
  const other = parsePipeline(text.replace('calibration: {bootstrap: 100}', 'calibration: {bootstrap: 100}\ndead: {lo: -0.2, hi: 0.2}'), p.file);
  try {
    await runPipeline(other, { ...quiet, resume: true });
    assert.unreachable('resumed a foreign checkpoint');
  } catch (e) {
    assert.ok(isQuantlensError(e) && e.code === 'STATE', String(e));
    assert.match((e as Error).message, /different pipeline or model/);
    assert.ok((e as Error).message.includes(path.join(out, 'state', 'checkpoint.json')));
  }
  assert.ok(existsSync(path.join(out, 'state', 'checkpoint.json')), 'refusal keeps the checkpoint');

  let inferred = 0;
  const logs: string[] = [];
  await runPipeline(cfg(), { ...quiet, resume: true, log: (l) => logs.push(l), onBatch: () => void inferred++ });
  const total = JSON.parse(readFileSync(path.join(reference, 'summary.json'), 'utf8'));
  assert.ok(logs.some((l) => l.includes('resuming after batch 6')), logs.join('\n'));
  assert.is(inferred, refBatches - 6, 'the 6 checkpointed batches were not inferred again');
  await sameOutputs(out, reference);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  assert.is(summary.dataset.examples, 160);
  assert.is(summary.precisions.fp32.examples, total.precisions.fp32.examples);
  assert.is(summary.precisions.fp32.tokens, total.precisions.fp32.tokens);
  assert.is(summary.padding_efficiency, total.padding_efficiency);
  assert.equal(summary.precisions.fp32.ace_ci, total.precisions.fp32.ace_ci);

  // Without --resume an old state folder is discarded: a fresh run.
  await runPipeline(cfg(), { ...quiet, onBatch: () => { if (++seen === 12) throw new Error('again'); } }).catch(() => undefined);
  const fresh: string[] = [];
  await runPipeline(cfg(), { ...quiet, log: (l) => fresh.push(l) });
  assert.not.ok(fresh.some((l) => l.includes('resuming')));
  await sameOutputs(out, reference);
});

interface Child {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function runCli(yaml: string, killWhen?: (kill: () => void) => void): Promise<Child> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(repo, 'pipelines', 'bin.mjs'), 'run', yaml, '--resume', '--quiet', '--no-report'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let done = false;
    child.on('exit', (code, signal) => {
      done = true;
      resolve({ code, signal, stderr });
    });
    killWhen?.(() => {
      if (!done) child.kill('SIGKILL');
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('CLI: SIGKILL at random points, then --resume, gives the outputs of an uninterrupted run', async () => {
  const data = writeDataset(700);
  const p = pipelineYaml('killed', data, 1);
  const reference = (await referenceRun(p)).dir;
  const out = parsePipeline(p.text, p.file).output;
  const checkpoint = path.join(out, 'state', 'checkpoint.json');
  const events: string[] = [];
  let resumedOnce = false;

  // First kill: anywhere in the first seconds (often before the first checkpoint).
  const first = Math.round(500 + Math.random() * 2500);
  let r = await runCli(p.file, async (kill) => {
    await sleep(first);
    kill();
  });
  events.push(`kill after ${first} ms: ${r.signal ?? `exit ${r.code}`}`);
  // Then three kills at a random moment after some checkpoint exists.
  for (let k = 0; k < 3; k++) {
    const extra = Math.round(Math.random() * 1500);
    r = await runCli(p.file, async (kill) => {
      const t0 = Date.now();
      while (!existsSync(checkpoint) && Date.now() - t0 < 20_000) await sleep(25);
      await sleep(extra);
      kill();
    });
    resumedOnce ||= r.stderr.includes('resuming after batch');
    events.push(`kill ${extra} ms after a checkpoint: ${r.signal ?? `exit ${r.code}`}`);
    if (r.code === 0) break; // it finished before the kill
  }
  const final = await runCli(p.file);
  events.push(`final: exit ${final.code}`);
  console.log(`    ${events.join('; ')}`);
  assert.is(final.code, 0, final.stderr);
  resumedOnce ||= final.stderr.includes('resuming after batch');
  assert.ok(resumedOnce, `some run resumed from a checkpoint (${events.join('; ')})`);
  await sameOutputs(out, reference);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
  const ref = JSON.parse(readFileSync(path.join(reference, 'summary.json'), 'utf8'));
  assert.is(summary.dataset.examples, 700);
  assert.is(summary.precisions.fp32.tokens, ref.precisions.fp32.tokens);
  assert.equal(summary.dead, ref.dead);
  assert.equal(summary.precisions.fp32.ace_ci, ref.precisions.fp32.ace_ci);
  rmSync(root, { recursive: true, force: true });
});

test.run();
