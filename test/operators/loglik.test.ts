/**
 * loglik scoring equals a brute-force computation: each (prompt + choice) run alone through ORT,
 * with Σ log-softmax of the continuation tokens computed by hand.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import ort from 'onnxruntime-node';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { loadTokenizer } from '../../sources/tokenizer.ts';
import { sharedPath } from '../helpers/shared.ts';
import { duckdbQuery } from '../helpers/duckdb.ts';
import { tempDir } from '../helpers/temp.ts';

const QUESTIONS = ['Is the sky blue?', 'Do cats bark?', 'Is water wet?', 'Can fish fly?', 'Is fire cold?', 'Do birds sing?'];
const TEMPLATE = 'Respond with True or False only.\n{prompt}\nAnswer:';
const CHOICES = [' True', ' False'];

test('stories260K: loglik predictions and confidences equal a one-sequence-at-a-time brute force', async () => {
  const model = sharedPath('models/stories260K-onnx', 'loglik scoring');
  if (!model) return;
  const dir = tempDir('ql-loglik-');
  writeFileSync(path.join(dir, 'q.jsonl'), QUESTIONS.map((q, i) => JSON.stringify({ prompt: q, gold: i % 2 ? 'False' : 'True' })).join('\n') + '\n');
  const cfg = parsePipeline(
    `model: ${model}\nprecisions: [fp32]\ndataset:\n  path: q.jsonl\n  prompt: ${JSON.stringify(TEMPLATE)}\nscoring: {mode: loglik, choices: [" True", " False"]}\nmeasure: [predictions, neurons]\noutput: out\n`,
    path.join(dir, 'p.yaml'),
  );
  await runPipeline(cfg, { quiet: true, report: false, log: () => undefined });
  const rows = await duckdbQuery(`select example_id, predicted_token, confidence, correct, choice_loglik, choice_tokens from '${dir}/out/predictions.parquet' order by example_id`);

  const tok = await loadTokenizer(model);
  const s = await ort.InferenceSession.create(readFileSync(path.join(model, 'model.onnx')));
  for (const row of rows) {
    const text = TEMPLATE.replace('{prompt}', QUESTIONS[row.example_id as number]);
    const ctx = Array.from(tok.encode(text));
    const scores: number[] = [];
    const counts: number[] = [];
    for (const c of CHOICES) {
      const whole = Array.from(tok.encode(text + c));
      let k = 0;
      while (k < ctx.length && ctx[k] === whole[k]) k++;
      const r = await s.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(whole.map(BigInt)), [1, whole.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(whole.length).fill(1n), [1, whole.length]),
      });
      const L = r.logits.data as Float32Array;
      const V = r.logits.dims[2];
      let sum = 0;
      for (let j = k; j < whole.length; j++) {
        const row = L.subarray((j - 1) * V, j * V);
        const m = Math.max(...row);
        const z = row.reduce((a, v) => a + Math.exp(v - m), 0);
        sum += row[whole[j]] - m - Math.log(z);
      }
      scores.push(sum);
      counts.push(whole.length - k);
    }
    // Every choice's score and token count are stored as list columns.
    const items = (v: unknown) => ((v as { items?: number[] }).items ?? v) as number[];
    items(row.choice_loglik).forEach((v, i) => assert.ok(Math.abs(v - scores[i]) < 1e-4, `loglik ${v} vs ${scores[i]}`));
    assert.equal(items(row.choice_tokens), counts);
    const best = scores[0] >= scores[1] ? 0 : 1;
    const conf = 1 / scores.reduce((a, v) => a + Math.exp(v - scores[best]), 0);
    assert.is(row.predicted_token, CHOICES[best]);
    assert.ok(Math.abs((row.confidence as number) - conf) < 1e-4, `confidence ${row.confidence} vs ${conf}`);
    assert.is(row.correct, CHOICES[best].trim() === (row.example_id as number % 2 ? 'False' : 'True'));
  }
  assert.is(rows.length, QUESTIONS.length);
});

test.run();
