/**
 * Streaming for real: a synthetic 200,000-record JSONL runs through the whole pipeline (demo
 * model, capture, neurons, predictions sink) and the heap after GC at record 200k is no larger
 * than at record 20k (allowing for one Parquet row group of predictions being buffered). And the
 * tokenizer keeps nothing per distinct prompt (its BPE cache held every whole prompt of the demo
 * tokenizer, whose pre-tokenizer does not split words: 10k entries, then churn).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { tempDir } from '../helpers/temp.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { loadTokenizer } from '../../sources/tokenizer.ts';

const N = 200_000;

async function writeJsonl(file: string): Promise<void> {
  const out = createWriteStream(file);
  const words = ['is', 'the', 'sky', 'blue', 'water', 'wet', 'fire', 'cold', 'a', 'cat'];
  for (let i = 0; i < N; i++) {
    const q = `${words[i % 10]} ${words[(i * 7) % 10]} ${words[(i * 3) % 10]}?`;
    if (!out.write(JSON.stringify({ prompt: q, gold: i % 3 ? 'True' : 'False' }) + '\n')) await new Promise((r) => out.once('drain', r));
  }
  await new Promise<void>((r) => out.end(r));
}

function heapAfterGc(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('heap does not grow from 20k to 200k records', async () => {
  assert.ok(typeof (globalThis as { gc?: unknown }).gc === 'function', 'run with --expose-gc (the test driver does)');
  const dir = tempDir('ql-mem-');
  await writeJsonl(path.join(dir, 'big.jsonl'));
  const cfg = parsePipeline(
    `model: demo\ndataset:\n  path: big.jsonl\nlayers: [first, last]\nbatch: {max_tokens: 8192, max_examples: 512, window: 2048}\nmeasure: [predictions, neurons]\noutput: out\n`,
    path.join(dir, 'p.yaml'),
  );
  const samples: { at: number; heap: number }[] = [];
  let next = 20_000;
  await runPipeline(cfg, {
    quiet: true,
    report: false,
    log: () => undefined,
    onBatch: (_r, seen) => {
      if (seen >= next) {
        samples.push({ at: seen, heap: heapAfterGc() });
        next += 20_000;
      }
    },
  });
  const at20k = samples[0].heap;
  const peakLater = Math.max(...samples.slice(1).map((s) => s.heap));
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log(`heap+arrayBuffers after GC: at ${samples[0].at} records ${mb(at20k)} MB; max over later samples up to ${samples.at(-1)!.at}: ${mb(peakLater)} MB`);
  assert.ok(samples.at(-1)!.at >= N - 20_000, 'sampled up to the end');
  // One predictions row group (64k rows) may be buffered at the later samples: allow 16 MB.
  assert.ok(peakLater - at20k < 16 * 2 ** 20, `grew by ${mb(peakLater - at20k)} MB`);
});

test('the tokenizer keeps nothing per distinct prompt', async () => {
  const tok = await loadTokenizer(await ensureDemoModel({ size: 'tiny' }));
  const words = ['plus', 'equal', 'minus', 'water', 'is', 'odd', 'even', 'sun', 'with', 'number', 'smaller', 'bigger'];
  // Distinct prompts of 5–9 words, as bench/memory.ts's synthetic dataset.
  const prompt = (i: number) => `Question: ${Array.from({ length: 5 + (i % 5) }, (_, k) => words[Math.floor(i / 12 ** k) % 12]).join(' ')} ${i}?\nAnswer:`;
  for (let i = 0; i < 1000; i++) tok.encode(prompt(i));
  const before = heapAfterGc();
  for (let i = 1000; i < 9000; i++) tok.encode(prompt(i));
  const grown = heapAfterGc() - before;
  console.log(`heap after GC grew by ${(grown / 2 ** 20).toFixed(2)} MB over 8000 distinct prompts`);
  // The old whole-prompt cache held ~800 B per prompt (6+ MB here).
  assert.ok(grown < 1.5 * 2 ** 20, `grew by ${(grown / 2 ** 20).toFixed(2)} MB`);
});

test.run();
