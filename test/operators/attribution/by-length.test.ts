/**
 * Attribution grouped by length (operators/attribution/by-length.ts) and its memory budget
 * (lig.ts attributionRowsPerRun), on stories260K: equal to each example attributed alone at the
 * tolerance of lig.test.ts, whatever the budget; the budget arithmetic against the formula; a
 * budget below one row refused in one line naming the key.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { attributeExample, attributionRowBytes, attributionRowsPerRun, createAttributionSession, sessionRowBytes, type LigResult } from '../../../operators/attribution/lig.ts';
import { attributeByLength } from '../../../operators/attribution/lig.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { expectRejects } from '../../helpers/expect-error.ts';

const PROMPTS = [
  'is windows movie maker part of windows essentials',
  'do iran and afghanistan speak the same language',
  'is confectionary sugar the same as powdered sugar',
  'is elder scrolls online the same as skyrim',
  'is confectionary sugar the same as powdered sugar', // the same length as another: one group of two
];

function assertSame(got: LigResult, alone: LigResult, tol: number, what: string): void {
  assert.is(got.positions, alone.positions, what);
  assert.is(got.target, alone.target, what);
  let scale = 0;
  for (const v of alone.attributions) scale = Math.max(scale, Math.abs(v));
  assert.ok(scale > 1e-3, 'non-trivial attributions');
  for (let j = 0; j < alone.attributions.length; j++) {
    assert.ok(Math.abs(got.attributions[j] - alone.attributions[j]) <= tol * scale, `${what} value ${j}: ${got.attributions[j]} vs ${alone.attributions[j]}`);
  }
  assert.ok(Math.abs(got.F_input - alone.F_input) < 1e-5 && Math.abs(got.F_baseline - alone.F_baseline) < 1e-5, what);
}

test('rows per run: floor(budget ÷ seq·(2·width + vocab)·4); the old element budget when no bytes are given', () => {
  assert.is(attributionRowBytes(60, 172, 512), 60 * (2 * 172 + 512) * 4);
  assert.is(attributionRowsPerRun(60, 172, 512, { memoryBudgetBytes: 10 * 60 * 856 * 4 + 5 }), 10);
  assert.is(attributionRowsPerRun(60, 172, 512, { memoryBudgetBytes: 60 * 856 * 4 }), 1);
  assert.is(attributionRowsPerRun(60, 172, 512, {}), Math.floor((1 << 22) / (60 * 512)));
});

test('stories260K layer 2: grouped by length == each example alone, at any budget; a budget below one row is refused', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'attribution grouped by length');
  if (!dir) return;
  const tok = await loadTokenizer(dir);
  const examples = PROMPTS.map((q) => ({ ids: tok.encode(`Respond with True or False only.\n${q}\nAnswer:`) }));
  assert.ok(new Set(examples.map((e) => e.ids.length)).size >= 3, 'mixed lengths');
  const s = await createAttributionSession(path.join(dir, 'model.onnx'), '/model/layers.2/mlp/act_fn/Mul_output_0');
  const opts = { steps: 12, onWarning: () => {} };
  const alone: LigResult[] = [];
  for (const e of examples) alone.push(await attributeExample(s, e, s.tensor, opts));
  const grouped = await attributeByLength(s, examples, s.tensor, { ...opts, memoryBudgetBytes: 64 << 20 });
  grouped.forEach((r, i) => assertSame(r, alone[i], 1e-4, `example ${i}`));
  // One row per run (the budget of exactly one row at the longest length) changes nothing either.
  const S = Math.max(...examples.map((e) => e.ids.length));
  const oneRow = await attributeByLength(s, examples, s.tensor, { ...opts, memoryBudgetBytes: sessionRowBytes(s, S) });
  oneRow.forEach((r, i) => assertSame(r, alone[i], 1e-4, `one row per run, example ${i}`));
  // Gold targets follow their examples through the grouping.
  const targets = [5, 6, 7, 8, 9];
  const withTargets = await attributeByLength(s, examples, s.tensor, { ...opts, targets, memoryBudgetBytes: 64 << 20 });
  assert.equal(withTargets.map((r) => r.target), targets);
  await expectRejects(attributeByLength(s, examples, s.tensor, { ...opts, memoryBudgetBytes: 1000 }), { code: 'BUDGET', message: /salience\.memory_budget_gb.*below one row/ });
  await s.session.release();
  await s.prefix?.session.release();
});

test.run();
