/**
 * measure: perplexity streams: 10,000 short sequences (demo model, fp32 vs nf4) and the heap
 * after GC at sequence 10k is no larger than at 1k (within 1 MB; holding the per-position KLD and
 * Δp in memory would add 16 bytes × the positions in between, printed below). The per-position
 * values are on disk instead: at the 10k sample the spill files hold exactly 16 bytes per
 * position scored so far. Kept short for CI (seconds of demo-model inference).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';

const N = 10_000;
const WORDS = ['is', 'the', 'sky', 'blue', 'water', 'wet', 'fire', 'cold', 'a', 'cat', 'dog', 'runs', 'fast', 'and', 'red'];

async function writeJsonl(file: string): Promise<void> {
  const out = createWriteStream(file);
  for (let i = 0; i < N; i++) {
    const text = Array.from({ length: 2 }, (_, k) => WORDS[(i * 7 + k * k * 3 + k) % WORDS.length]).join(' ');
    if (!out.write(JSON.stringify({ prompt: text, gold: 'True' }) + '\n')) await new Promise((r) => out.once('drain', r));
  }
  await new Promise<void>((r) => out.end(r));
}

/** Bytes in the value spills (*.f64) under `dir`: the spill folder lives in the test's own TMPDIR. */
function bytesUnder(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile() && e.name.endsWith(".f64")) n += statSync(path.join(e.parentPath, e.name)).size;
  return n;
}

function heapAfterGc(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('perplexity: heap flat from 1k to 10k sequences', async () => {
  assert.ok(typeof (globalThis as { gc?: unknown }).gc === 'function', 'run with --expose-gc (the test driver does)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ql-pplmem-'));
  await writeJsonl(path.join(dir, 'text.jsonl'));
  const cfg = parsePipeline(
    `model: demo\nprecisions: [fp32, nf4]\ndataset:\n  path: text.jsonl\nlayers: [first]\nbatch: {max_tokens: 16384, max_examples: 256, window: 1024}\nmeasure: [predictions, perplexity]\noutput: out\n`,
    path.join(dir, 'p.yaml'),
  );
  const tmp = path.join(dir, 'tmp');
  mkdirSync(tmp);
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  const samples: { at: number; heap: number; positions: number; spilled: number }[] = [];
  let positions = 0;
  let result;
  try {
    result = await runPipeline(cfg, {
      quiet: true,
      report: false,
      cacheDir: path.join(dir, 'cache'),
      log: () => undefined,
      onBatch: (r, seen) => {
        for (const e of r.batch.examples) positions += e.ids.length - 1;
        if ((samples.length === 0 && seen >= 1000) || seen === N) samples.push({ at: seen, heap: heapAfterGc(), positions, spilled: bytesUnder(tmp) });
      },
    });
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  }
  assert.is(samples.length, 2);
  assert.is(result.summary.perplexity.precisions.nf4.positions, positions, 'every next-token position of every sequence');
  assert.is(samples[1].spilled, 16 * samples[1].positions, 'KLD and Δp of every position so far are on disk');
  assert.is(bytesUnder(tmp), 0, 'spill files removed at the end');
  const mb = (b: number) => (b / 2 ** 20).toFixed(2);
  const grew = samples[1].heap - samples[0].heap;
  const inMemory = 16 * (samples[1].positions - samples[0].positions);
  console.log(`heap+arrayBuffers after GC: ${mb(samples[0].heap)} MB at ${samples[0].at}, ${mb(samples[1].heap)} MB at ${samples[1].at}; ${positions} positions (${mb(inMemory)} MB if held in memory)`);
  assert.ok(grew < 2 ** 20, `grew by ${mb(grew)} MB`);
});

test.run();
