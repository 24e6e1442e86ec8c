import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstTokenCorrect, scorePredictions } from '../../operators/score.ts';
import type { PredictionBatch } from '../../core/types.ts';
import { isQuantlensError } from '../../core/errors.ts';

const VOCAB = ['<unk>', ' True', ' False', 'true', ' ', 'Yes', ' no', 'TRUE!', 'x', ' tr'];
const V = VOCAB.length;
const decode = (id: number) => VOCAB[id];

function batch(logitRows: number[][], gold: string[]): PredictionBatch {
  return { batchIndex: 3, precision: 'q4', exampleIds: Int32Array.from(logitRows, (_, i) => 10 + i), gold, logits: Float32Array.from(logitRows.flat()), vocab: V };
}

function makeRows(seed: number, n: number): number[][] {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  return Array.from({ length: n }, () => Array.from({ length: V }, () => (r() - 0.5) * 8));
}

test('first-token: argmax, softmax confidence and containment match a brute force', () => {
  const rows = makeRows(1, 40);
  rows[0] = rows[0].map((_, v) => (v === 4 ? 5 : 0)); // ' ' wins: empty prediction
  rows[1] = rows[1].map(() => 0); // all tied: first index
  const gold = rows.map((_, i) => ['true', ' TRUE ', 'false', 'yes', 'no', ''][i % 6]);
  const out = scorePredictions(batch(rows, gold), { mode: 'first-token', decode });
  out.forEach((row, i) => {
    const x = rows[i].map((v) => Math.fround(v));
    const best = x.indexOf(Math.max(...x));
    const z = x.reduce((a, v) => a + Math.exp(v), 0);
    assert.is(row.predicted_token_id, best);
    assert.is(row.predicted_token, VOCAB[best]);
    assert.ok(Math.abs(row.confidence - Math.exp(x[best]) / z) < 1e-12);
    const pred = VOCAB[best];
    const expected = pred.trim() !== '' && gold[i].trim() !== '' && pred.toLowerCase().indexOf(gold[i].trim().toLowerCase()) >= 0;
    assert.is(row.correct, expected, `${JSON.stringify(pred)} vs ${JSON.stringify(gold[i])}`);
    assert.is(row.example_id, 10 + i);
    assert.is(row.precision, 'q4');
    assert.is(row.gold, gold[i]);
  });
  assert.is(out[0].predicted_token, ' ');
  assert.is(out[0].correct, false);
  assert.is(out[1].predicted_token_id, 0);
  assert.ok(Math.abs(out[1].confidence - 1 / V) < 1e-15);
  assert.ok(out.some((r) => r.correct) && out.some((r) => !r.correct));
});

test('first-token rule cases', () => {
  assert.is(firstTokenCorrect(' True', 'true'), true);
  assert.is(firstTokenCorrect('TRUE!', ' true '), true);
  assert.is(firstTokenCorrect(' tr', 'true'), false);
  assert.is(firstTokenCorrect('   ', 'true'), false);
  assert.is(firstTokenCorrect(' True', '  '), false);
});

test('choices: renormalised softmax over the label ids only', () => {
  const rows = makeRows(2, 30);
  rows[0][1] = 2; rows[0][2] = 2; // tie between choices: first listed wins
  const choices = { ' True': 1, ' False': 2, 'Yes': 5 };
  const gold = rows.map((_, i) => [' true', 'FALSE', 'yes', 'maybe'][i % 4]);
  const out = scorePredictions(batch(rows, gold), { mode: 'choices', choices });
  out.forEach((row, i) => {
    const ls = Object.entries(choices).map(([label, id]) => ({ label, id, l: Math.fround(rows[i][id]) }));
    const z = ls.reduce((a, c) => a + Math.exp(c.l), 0);
    let best = ls[0];
    for (const c of ls) if (c.l > best.l) best = c;
    assert.is(row.predicted_token, best.label);
    assert.is(row.predicted_token_id, best.id);
    assert.ok(Math.abs(row.confidence - Math.exp(best.l) / z) < 1e-12);
    assert.is(row.correct, best.label.trim().toLowerCase() === gold[i].trim().toLowerCase());
  });
  assert.is(out[0].predicted_token, ' True');
  assert.ok(out.some((r) => r.correct));
});

test('errors: loglik is not a per-logits scorer, bad choices, shape mismatch', () => {
  const b = batch(makeRows(3, 2), ['a', 'b']);
  const code = (fn: () => unknown) => { try { fn(); } catch (e) { return isQuantlensError(e) ? e.code : 'other'; } return null; };
  assert.is(code(() => scorePredictions(b, { mode: 'loglik' })), 'STATE');
  assert.is(code(() => scorePredictions(b, { mode: 'choices', choices: { a: 99 } })), 'CONFIG');
  assert.is(code(() => scorePredictions(b, { mode: 'choices', choices: { a: 1, b: 1 } })), 'CONFIG');
  assert.is(code(() => scorePredictions(b, { mode: 'choices', choices: {} })), 'CONFIG');
  assert.is(code(() => scorePredictions({ ...b, gold: ['a'] }, { mode: 'first-token', decode })), 'STATE');
});

test.run();
