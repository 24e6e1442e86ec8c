import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { openPredictionsSink } from '../../sinks/output-schemas.ts';
import { readPredictionColumns, type PredictionField } from '../../sinks/prediction-columns.ts';
import { mulberry32 } from '../../core/random.ts';
import { tempDir } from '../helpers/temp.ts';

const dir = tempDir('ql-prediction-columns-');
const ALL: PredictionField[] = ['example_id', 'precision', 'gold', 'predicted_token_id', 'predicted_token', 'confidence', 'correct'];
const PRECISIONS = ['nf4', 'fp32', 'llm-int8'];
const TOKENS = ['▁True', '▁False', 'a', '"quoted"', '日本', ''];

/** n examples × PRECISIONS written batch by batch as a run writes them; returns the file. */
async function writePredictions(name: string, n: number): Promise<string> {
  const file = path.join(dir, name);
  const sink = await openPredictionsSink(file, {});
  const r = mulberry32(9);
  for (let b = 0; b < n; b += 64) {
    for (const p of PRECISIONS) {
      const k = Math.min(64, n - b);
      const tok = Array.from({ length: k }, () => Math.floor(r() * TOKENS.length));
      await sink.append({
        example_id: Int32Array.from({ length: k }, (_, i) => 3 * (b + i) + 1),
        precision: Array(k).fill(p),
        gold: Array.from({ length: k }, () => (r() < 0.5 ? 'True' : 'False')),
        predicted_token_id: Int32Array.from(tok),
        predicted_token: tok.map((t) => TOKENS[t]),
        confidence: Float64Array.from({ length: k }, () => r()),
        correct: Array.from({ length: k }, () => r() < 0.4),
        truncated: Array(k).fill(false),
        choice_loglik: Array(k).fill(null),
        choice_tokens: Array(k).fill(null),
        prompt: Array(k).fill(null),
      });
    }
  }
  await sink.close();
  return file;
}

test('every field of every row equals what hyparquet reads as objects, over several row groups', async () => {
  // 6000 examples × 3 precisions = 18,000 rows: two row groups of predictions.parquet (16,384).
  const file = await writePredictions('all.parquet', 6000);
  const cols = await readPredictionColumns(file, ALL);
  const rows = await parquetReadObjects({ file: await asyncBufferFromFile(file), columns: ALL });
  assert.is(cols.length, rows.length);
  for (let i = 0; i < rows.length; i++) assert.equal(cols.row(i), rows[i], `row ${i}`);
  assert.equal(cols.precision!.values, PRECISIONS, 'precisions in order of first appearance');
  for (const p of PRECISIONS) assert.equal(cols.rowsOf(p), rows.flatMap((x, i) => (x.precision === p ? [i] : [])), `rows of ${p}`);
  assert.equal(cols.rowsOf('fp16'), []);
});

test('only the fields asked for are read', async () => {
  const file = await writePredictions('some.parquet', 100);
  const cols = await readPredictionColumns(file, ['precision', 'correct']);
  assert.ok(cols.correct && cols.precision);
  assert.is(cols.exampleId, undefined);
  assert.is(cols.confidence, undefined);
  assert.is(cols.gold, undefined);
});

test('100k examples × 3 precisions are held in typed columns, not row objects', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc (npm test does)');
  const file = await writePredictions('big.parquet', 100_000);
  const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  // Heap after a full GC, the least of a few turns of the event loop: a reader's buffers still
  // reachable from a settling promise for one turn are garbage, what `cols` holds is not (one
  // gc() right after the read measured 21 MiB once in CI, 8–9 MiB otherwise).
  const settled = async () => {
    let least = Infinity;
    for (let k = 0; k < 3; k++) {
      await new Promise((r) => setImmediate(r));
      gc();
      least = Math.min(least, used());
    }
    return least;
  };
  const before = await settled();
  const cols = await readPredictionColumns(file, ALL);
  const held = (await settled()) - before;
  assert.is(cols.length, 300_000);
  // Typed columns: 4 + 4 + 4 + 4 + 4 + 8 + 1 = 29 bytes per row ≈ 8.3 MiB; a row object each is > 100 bytes (> 28 MiB).
  assert.ok(held < 12 * 2 ** 20, `300k rows hold ${(held / 2 ** 20).toFixed(1)} MiB`);
});

test.run();
