/**
 * attributeByLength on worker sessions (operators/attribution/lig-parallel.ts): the balanced
 * assignment of length groups; on stories260K, bit-identical results (attributions, F, targets,
 * completeness, steps) in the same order and the same warnings as one session with the same
 * threads, also after parking and after switching the workers to another layer's session; a worker's error surfaces as one error and leaves no worker running.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTokenizer } from '../../../sources/tokenizer.ts';
import { attributeByLength, createAttributionSession, type LigResult } from '../../../operators/attribution/lig.ts';
import { assignGroups, lengthGroups, ParallelAttribution } from '../../../operators/attribution/lig-parallel.ts';
import { defaultSessionSettings } from '../../../onnx/session.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { expectRejects } from '../../helpers/expect-error.ts';

const QUESTIONS = [
  'is windows movie maker part of windows essentials',
  'do iran and afghanistan speak the same language',
  'is confectionary sugar the same as powdered sugar',
  'is elder scrolls online the same as skyrim',
  'can you use oyster card at epsom station',
  'is confectionary sugar the same as powdered sugar', // the same length as another: one group of two
  'is the federal court the same as the supreme court',
];

function assertIdentical(got: LigResult[], want: LigResult[], examples: { ids: Int32Array }[], what: string): void {
  assert.is(got.length, want.length);
  got.forEach((g, i) => {
    const w = want[i];
    assert.is(g.positions, examples[i].ids.length, `${what}, example ${i} in its place`);
    assert.equal([g.target, g.steps, g.F_input, g.F_baseline, g.completenessError, g.converged], [w.target, w.steps, w.F_input, w.F_baseline, w.completenessError, w.converged], `${what}, example ${i}`);
    assert.equal(g.history, w.history);
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    assert.ok(bytes(g.attributions).equals(bytes(w.attributions)), `${what}, example ${i}: attributions bit-identical`);
  });
}

test('length groups: ascending lengths, indices in order; assignment: every group once, balanced by length × examples', () => {
  const ex = [5, 3, 5, 9, 3, 3, 7].map((n) => ({ ids: new Int32Array(n) }));
  const groups = lengthGroups(ex);
  assert.equal(groups, [
    { length: 3, indices: [1, 4, 5] },
    { length: 5, indices: [0, 2] },
    { length: 7, indices: [6] },
    { length: 9, indices: [3] },
  ]);
  const plan = assignGroups(groups, 2);
  assert.equal([...plan.flat()].sort(), [0, 1, 2, 3]);
  const cost = plan.map((gs) => gs.reduce((s, g) => s + groups[g].length * groups[g].indices.length, 0));
  // Costs 9, 10, 7, 9: LPT puts 10 + 7 and 9 + 9 together (17 / 18), not 19 / 16.
  assert.equal(cost.sort(), [17, 18]);
  for (const gs of plan) assert.equal(gs, [...gs].sort((a, b) => a - b), 'ascending within a worker');
  assert.equal(assignGroups(groups.slice(0, 1), 3).map((g) => g.length), [1, 0, 0], 'fewer groups than workers: the rest idle');
});

test('stories260K layer 2: 2 workers × 1 thread == one 1-thread session, bit for bit, same order and warnings', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'parallel attribution');
  if (!dir) return;
  const tok = await loadTokenizer(dir);
  const examples = QUESTIONS.map((q) => ({ ids: tok.encode(`Respond with True or False only.\n${q}\nAnswer:`) }));
  assert.ok(lengthGroups(examples).length >= 4, 'mixed lengths');
  const modelPath = path.join(dir, 'model.onnx');
  const tensor = '/model/layers.2/mlp/act_fn/Mul_output_0';
  const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'quantlens-lig-parallel-'));
  const options = { settings: { ...defaultSessionSettings(), intraOpThreads: 1 }, cacheDir, prepack: true };
  try {
    const one = await createAttributionSession(modelPath, tensor, options);
    assert.is(one.graphCache, 'miss');
    const runner = await ParallelAttribution.start({ model: modelPath, tensor, options }, 2);
    assert.is(runner.workers, 2);
    // Gold-style targets on some examples, the model's top-1 on the others; a threshold every
    // example exceeds, so each one warns (the order of the warnings is part of the contract).
    const targets = examples.map((_, i) => (i % 3 === 0 ? 7 + i : undefined));
    const opts = { steps: 10, memoryBudgetBytes: 2 << 20, completenessThreshold: 0 };
    const seqWarnings: string[] = [];
    const parWarnings: string[] = [];
    const want = await attributeByLength(one, examples, tensor, { ...opts, targets, onWarning: (w) => seqWarnings.push(w) });
    const tensor0 = '/model/layers.0/mlp/act_fn/Mul_output_0';
    const one0 = await createAttributionSession(modelPath, tensor0, options);
    const want0 = await attributeByLength(one0, examples, tensor0, { ...opts, onWarning: () => {} });
    await one0.session.release();
    for (let round = 0; round < 2; round++) {
      parWarnings.length = 0;
      const got = await runner.attribute(examples, tensor, { ...opts, targets, onWarning: (w) => parWarnings.push(w) });
      assert.is(got.length, want.length);
      assertIdentical(got, want, examples, `round ${round}`);
      assert.equal(parWarnings, seqWarnings, 'same warnings, same order');
      // Parked between uses (sessions closed in the workers), reopened by the next call.
      await runner.park();
      // The same workers switch to another layer's session and back (one pool serves every runner).
      const other = { model: modelPath, tensor: tensor0, options };
      assertIdentical(await runner.attribute(examples, tensor0, { ...opts, onWarning: () => {} }, other), want0, examples, `layer 0, round ${round}`);
    }
    assert.ok(seqWarnings.length >= examples.length);
    await runner.release();
    await one.session.release();
    await expectRejects(runner.attribute(examples, tensor, opts), { code: 'UNSUPPORTED', message: /released/ });
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('stories260K: a worker error is one error naming the worker, and the workers are gone after it', async () => {
  const dir = sharedPath('models/stories260K-onnx', 'parallel attribution errors');
  if (!dir) return;
  const modelPath = path.join(dir, 'model.onnx');
  const tensor = '/model/layers.1/mlp/act_fn/Mul_output_0';
  const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'quantlens-lig-parallel-'));
  const options = { settings: { ...defaultSessionSettings(), intraOpThreads: 1 }, cacheDir };
  try {
    // A tensor the model does not have: each worker's session fails to open; start rejects once.
    await expectRejects(ParallelAttribution.start({ model: modelPath, tensor: '/model/no/such/tensor', options }, 2), { message: /^attribution worker [12] of 2: .*no\/such\/tensor/ });
    const runner = await ParallelAttribution.start({ model: modelPath, tensor, options }, 2);
    // Token ids beyond the vocabulary (512): ONNX Runtime's Gather refuses them in the worker.
    const bad = [{ ids: Int32Array.from([1, 2, 3]) }, { ids: Int32Array.from([1, 100_000, 3, 4]) }];
    await expectRejects(runner.attribute(bad, tensor, { steps: 2, onWarning: () => {} }), { message: /^attribution worker [12] of 2: .*Gather/ });
    assert.is(runner.workers, 0, 'workers terminated');
    await expectRejects(runner.attribute(bad.slice(0, 1), tensor, { steps: 2 }), { message: /^attribution worker/ });
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test.run();
