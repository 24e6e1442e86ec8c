/**
 * `scoring.mode: choices` equals a brute-force teacher-forced computation: each (prompt + label)
 * run alone through ONNX Runtime, a full softmax at every step, the labels compared at the first
 * token where their continuations differ. On stories260K and on the demo model.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { loadTokenizer, type TextTokenizer } from '../../sources/tokenizer.ts';
import { goldTarget } from '../../operators/choices.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

const QUESTIONS = ['Is the sky blue?', 'Do cats bark?', 'Is water wet?', 'Can fish fly?', 'Is fire cold?'];
const TEMPLATE = 'Respond with True or False only.\n{prompt}\nAnswer:';

/** log p of each token of `seq` from position `from` on, from one unpadded run, full softmax per step. */
async function stepLogProbs(s: ort.InferenceSession, seq: number[], from: number): Promise<number[]> {
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(seq.map(BigInt)), [1, seq.length]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(seq.length).fill(1n), [1, seq.length]),
  };
  if (s.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from(seq.map((_, i) => BigInt(i))), [1, seq.length]);
  const r = await s.run(feeds);
  const L = r.logits.data as Float32Array;
  const V = r.logits.dims[2];
  const out: number[] = [];
  for (let j = from; j < seq.length; j++) {
    const row = Array.from(L.subarray((j - 1) * V, j * V));
    const m = Math.max(...row);
    const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
    out.push(row[seq[j]] - m - Math.log(z));
  }
  return out;
}

/** Expected row: labels compared at their first differing continuation token (teacher-forced). */
async function bruteForce(s: ort.InferenceSession, tok: TextTokenizer, text: string, labels: string[]) {
  const ctx = Array.from(tok.encode(text));
  const wholes = labels.map((l) => Array.from(tok.encode(text + l)));
  const starts = wholes.map((w) => {
    let k = 0;
    while (k < ctx.length && w[k] === ctx[k]) k++;
    return k;
  });
  assert.ok(starts.every((k) => k === starts[0]), 'labels keep the same prompt tokens');
  const conts = wholes.map((w) => w.slice(starts[0]));
  let d = 0;
  while (conts.every((c) => c[d] === conts[0][d])) d++;
  const lp = await Promise.all(wholes.map((w) => stepLogProbs(s, w.slice(0, starts[0] + d + 1), starts[0])));
  const at = lp.map((x) => x[d]);
  const best = at.indexOf(Math.max(...at));
  const p = at.map((v) => Math.exp(v));
  return { label: labels[best], token: conts[best][d], confidence: p[best] / p.reduce((a, b) => a + b, 0), loglik: lp.map((x) => x.reduce((a, b) => a + b, 0)), tokens: d + 1, shared: d };
}

async function checkChoices(model: string, labels: string[], what: string, minShared = 0) {
  const dir = tempDir('ql-choices-');
  writeFileSync(path.join(dir, 'q.jsonl'), QUESTIONS.map((q, i) => JSON.stringify({ prompt: q, gold: labels[i % labels.length].trim() })).join('\n') + '\n');
  const cfg = parsePipeline(
    `model: ${model}\nprecisions: [fp32]\ndataset:\n  path: q.jsonl\n  prompt: ${JSON.stringify(TEMPLATE)}\nscoring: {mode: choices, choices: ${JSON.stringify(labels)}}\npredictions: {prompt: true}\nmeasure: [predictions]\noutput: out\n`,
    path.join(dir, 'p.yaml'),
  );
  await runPipeline(cfg, { quiet: true, report: false, log: () => undefined });
  const rows = await duckdbQuery(`select example_id, predicted_token, predicted_token_id, confidence, correct, choice_loglik, choice_tokens, prompt from '${dir}/out/predictions.parquet' order by example_id`);
  assert.is(rows.length, QUESTIONS.length);
  const tok = await loadTokenizer(model);
  const s = await ort.InferenceSession.create(readFileSync(path.join(model, 'model.onnx')));
  let shared = Infinity;
  for (const row of rows) {
    const text = TEMPLATE.replace('{prompt}', QUESTIONS[row.example_id as number]);
    assert.is(row.prompt, text);
    const want = await bruteForce(s, tok, text, labels);
    shared = Math.min(shared, want.shared);
    assert.is(row.predicted_token, want.label, `${what} example ${row.example_id}`);
    assert.is(row.predicted_token_id, want.token);
    assert.ok(Math.abs((row.confidence as number) - want.confidence) < 1e-5, `${what}: confidence ${row.confidence} vs ${want.confidence}`);
    assert.is(row.correct, want.label.trim() === labels[(row.example_id as number) % labels.length].trim());
    const items = (v: unknown) => ((v as { items?: number[] }).items ?? v) as number[];
    const ll = items(row.choice_loglik);
    ll.forEach((v, k) => assert.ok(Math.abs(v - want.loglik[k]) < 1e-4, `${what}: loglik ${v} vs ${want.loglik[k]}`));
    assert.equal(items(row.choice_tokens), labels.map(() => want.tokens));
  }
  // The labels do share tokens where the test means them to (the teacher-forced path).
  assert.ok(shared >= minShared, `${what}: ${shared} shared tokens`);
  await s.release();
}

test('stories260K: choices [" True", " False"] equal the brute force', async () => {
  const model = sharedPath('models/stories260K-onnx', 'choices scoring');
  if (!model) return;
  await checkChoices(model, [' True', ' False'], 'stories260K True/False');
});

test('stories260K: labels sharing tokens (" True", " Trust") are teacher-forced to their distinguishing token', async () => {
  const model = sharedPath('models/stories260K-onnx', 'choices scoring');
  if (!model) return;
  await checkChoices(model, [' True', ' Trust'], 'stories260K True/Trust', 3);
});

test('demo model: choices [" True", " False"] equal the brute force', async () => {
  await checkChoices(await ensureDemoModel(), [' True', ' False'], 'demo');
});

test('stories260K: salience.target gold uses the distinguishing token, the shared tokens fed after the prompt', async () => {
  const model = sharedPath('models/stories260K-onnx', 'gold target');
  if (!model) return;
  const tok = await loadTokenizer(model);
  const text = TEMPLATE.replace('{prompt}', QUESTIONS[0]);
  const ids = tok.encode(text);
  const ex = { example_id: 0, ids, gold: 'Trust', truncated: false, fields: {} };
  const whole = Array.from(tok.encode(text + ' Trust'));
  const other = Array.from(tok.encode(text + ' True'));
  let d = ids.length;
  while (whole[d] === other[d]) d++;
  const g = goldTarget(tok, ex, text, [' True', ' Trust'], 512);
  assert.equal(Array.from(g.ids), whole.slice(0, d));
  assert.is(g.target, whole[d]);
  // With True/False the labels differ at the first token after the prompt: ids unchanged.
  const tf = goldTarget(tok, { ...ex, gold: 'True' }, text, [' True', ' False'], 512);
  assert.is(tf.ids, ids);
  assert.is(tf.target, other[ids.length]);
  assert.ok(tf.target !== tok.encode(' True')[1], 'not the bare word boundary');
});

test('labels no single token tells apart: one line pointing to loglik', async () => {
  const dir = tempDir('ql-choices-');
  writeFileSync(path.join(dir, 'q.jsonl'), JSON.stringify({ prompt: 'Is it?', gold: 'True' }) + '\n');
  const cfg = parsePipeline(`model: demo\ndataset:\n  path: q.jsonl\nscoring: {mode: choices, choices: [" True", " True!"]}\nmeasure: [predictions]\noutput: out\n`, path.join(dir, 'p.yaml'));
  try {
    await runPipeline(cfg, { quiet: true, report: false, log: () => undefined });
    assert.unreachable('should refuse');
  } catch (e) {
    const msg = (e as Error).message;
    assert.match(msg, /scoring\.choices.*" True" is a token prefix of " True!".*use scoring\.mode: loglik/);
    assert.not.match(msg, /\n/);
  }
});

test.run();
