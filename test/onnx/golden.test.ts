/**
 * End-to-end golden values on the real trained stories260K (ONNX export): tokenizer → feeds →
 * session → logits, checked against reference_greedy.json (an independent float64 NumPy forward
 * pass over the llama2.c checkpoint) and against each prompt run alone.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { planInputs, buildFeeds, type InputPlan } from '../../onnx/feeds.ts';
import { createSession, defaultSessionSettings } from '../../onnx/session.ts';
import { loadTokenizer } from '../../sources/tokenizer.ts';
import { sharedPath } from '../helpers/shared.ts';

const modelDir = sharedPath('models/stories260K-onnx', 'stories260K golden logits');
const refFile = sharedPath('models/stories260K/reference_greedy.json', 'stories260K golden logits');
const boolqFile = sharedPath('datasets/boolq.csv', 'stories260K padded batch');

let session: ort.InferenceSession;
let plan: InputPlan;

async function ready(): Promise<boolean> {
  if (!modelDir || !refFile) return false;
  session ??= await createSession(path.join(modelDir, 'model.onnx'), defaultSessionSettings());
  plan ??= planInputs(session, 'stories260K-onnx/model.onnx');
  return true;
}

/** Logits [rows, seqLen, vocab] of a left-padded batch. */
async function logits(rows: Int32Array[]): Promise<{ data: Float32Array; seqLen: number; vocab: number }> {
  const seqLen = Math.max(...rows.map((r) => r.length));
  const out = await session.run(buildFeeds(plan, { seqLen, lengths: Int32Array.from(rows.map((r) => r.length)), ids: rows }, 0));
  return { data: out.logits.data as Float32Array, seqLen, vocab: out.logits.dims[2] };
}

function argmax(a: ArrayLike<number>, from: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[from + i] > a[from + best]) best = i;
  return best;
}

test('logits at position 0 after BOS: top-5 ids and values match the reference', async () => {
  if (!(await ready())) return;
  const ref = JSON.parse(readFileSync(refFile!, 'utf8'));
  const { data, vocab } = await logits([Int32Array.from(ref.prompt_token_ids)]);
  assert.is(vocab, 512);
  const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => data[b] - data[a]);
  const top5 = ref.logits_position0_top5 as { token_id: number; logit: number }[];
  assert.equal(order.slice(0, 5), top5.map((t) => t.token_id));
  for (const t of top5) assert.ok(Math.abs(data[t.token_id] - t.logit) < 1e-3, `token ${t.token_id}: ${data[t.token_id]} vs ${t.logit}`);
});

test('greedy decoding of 50 tokens (full sequence rerun each step) matches the reference', async () => {
  if (!(await ready())) return;
  const ref = JSON.parse(readFileSync(refFile!, 'utf8'));
  const ids: number[] = [...ref.prompt_token_ids];
  for (let step = 0; step < 50; step++) {
    const { data, seqLen, vocab } = await logits([Int32Array.from(ids)]);
    ids.push(argmax(data, (seqLen - 1) * vocab, vocab));
  }
  assert.equal(ids.slice(ref.prompt_token_ids.length), ref.greedy_token_ids.slice(0, 50));
});

test('left-padded batch of BoolQ prompts: last-position logits equal each prompt run alone', async () => {
  if (!(await ready()) || !boolqFile) return;
  const tok = await loadTokenizer(modelDir!);
  // First 5 prompts (one per line; BoolQ questions are single-line, unquoted in the CSV).
  const prompts = readFileSync(boolqFile, 'utf8').split('\n').slice(1, 6).map((line) => line.slice(0, line.lastIndexOf(',', line.lastIndexOf(',') - 1)));
  const rows = prompts.map((p) => tok.encode(`Respond with True or False only.\n${p}\nAnswer:`));
  const lengths = rows.map((r) => r.length);
  assert.ok(new Set(lengths).size >= 3, `lengths ${lengths}`); // really different lengths → real padding
  const batch = await logits(rows);
  let maxDiff = 0;
  for (let b = 0; b < rows.length; b++) {
    const alone = await logits([rows[b]]);
    const V = batch.vocab;
    for (let v = 0; v < V; v++) {
      const x = batch.data[(b * batch.seqLen + batch.seqLen - 1) * V + v];
      const y = alone.data[(alone.seqLen - 1) * V + v];
      maxDiff = Math.max(maxDiff, Math.abs(x - y));
    }
  }
  console.log(`stories260K padded vs alone (lengths ${lengths}): max |diff| ${maxDiff}`);
  assert.ok(maxDiff < 1e-4, `max diff ${maxDiff}`);
});

test.run();
