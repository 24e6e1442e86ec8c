import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { calibrationColumns } from '../../pipelines/calibration-output.ts';
import { writePredictionRows } from '../../pipelines/checkpoint.ts';
import { mulberry32 } from '../../core/random.ts';
import { tempDir } from '../helpers/temp.ts';

test('calibrationColumns gives each precision its rows in file order, over several row groups', async () => {
  const file = path.join(tempDir('ql-calib-out-'), 'predictions.parquet');
  const r = mulberry32(4);
  const precisions = ['fp32', 'nf4', 'llm-int8'];
  // 40k rows: three 16k row groups.
  const rows = Array.from({ length: 40_000 }, (_, i) => ({
    example_id: Math.floor(i / 3) * 7 + 1,
    precision: precisions[i % 3],
    gold: 'True',
    predicted_token_id: 5,
    predicted_token: 'x',
    confidence: i === 5 ? 1 : r(),
    correct: r() < 0.4,
    truncated: false,
    choice_loglik: null,
    choice_tokens: null,
    prompt: null,
  }));
  assert.is(await writePredictionRows(file, {}, rows), rows.length);
  const by = await calibrationColumns(file);
  assert.equal([...by.keys()], precisions);
  for (const p of precisions) {
    const want = rows.filter((x) => x.precision === p);
    const got = by.get(p)!;
    assert.is(got.length, want.length, p);
    assert.equal(Array.from(got.conf), want.map((x) => x.confidence), `${p} confidence`);
    assert.equal(Array.from(got.correct), want.map((x) => (x.correct ? 1 : 0)), `${p} correct`);
    assert.equal(Array.from(got.ids), want.map((x) => x.example_id), `${p} example_id`);
  }
});

test.run();
