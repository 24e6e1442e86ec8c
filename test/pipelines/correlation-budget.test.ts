/**
 * The finish's part of correlation's budget: one full float64 distance matrix per finishing
 * thread, of at most min(width, 4096) neurons, with two threads when a pass finishes two keys or
 * more and one is 2,048 wide or more (operators/estimators/correlation-finish-parallel.ts), and
 * how it moves the packing of keys into passes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { finishScratchBytes, gramTransientBytes, planCorrelationPasses } from '../../pipelines/correlation-budget.ts';
import { correlationMemoryBytes } from '../../operators/estimators/correlation.ts';

const key = (layer: number, width: number) => ({ precision: 'fp32', layer, tensor: `mlp.${layer}`, width });

test('finish scratch: one matrix per thread, capped at the clustering limit, none without clustering', () => {
  assert.is(finishScratchBytes([key(0, 1024)]), 1024 * 1024 * 8);
  assert.is(finishScratchBytes([key(0, 1024), key(1, 1024)]), 1024 * 1024 * 8, 'narrow keys finish on one thread');
  assert.is(finishScratchBytes([key(0, 4096)]), 4096 * 4096 * 8, 'one key: one thread');
  assert.is(finishScratchBytes([key(0, 4096), key(1, 512)]), 2 * 4096 * 4096 * 8, 'two keys, one wide: two threads');
  assert.is(finishScratchBytes([key(0, 18944), key(1, 18944)]), 2 * 4096 * 4096 * 8, 'wider layers cluster at most 4096 neurons');
  assert.is(finishScratchBytes([key(0, 4096), key(1, 4096)], false), 0);
  assert.is(finishScratchBytes([]), 0);
});

test('two wide keys that fit with one thread’s matrix but not two go to two passes; without clustering, one', () => {
  const w = 4096, rows = 256;
  const gram = gramTransientBytes(w, rows, 'float32');
  const one = correlationMemoryBytes(w, 1);
  // Room for both keys' co-moments, the Gram and ONE matrix, short of the second.
  const budget = 2 * one + gram + w * w * 8 + 1;
  const plan = (clusters: boolean) => planCorrelationPasses([key(0, w), key(1, w)], { correlationBudgetBytes: budget, runBudgetBytes: 2 * budget, otherBytes: 0, rows, compute: 'float32', clusters });
  const clustered = plan(true);
  assert.equal(clustered.passes.map((p) => p.length), [1, 1]);
  assert.is(clustered.finishBytes, w * w * 8);
  assert.is(clustered.peakBytes, one + gram + w * w * 8);
  const plain = plan(false);
  assert.equal(plain.passes.map((p) => p.length), [2]);
  assert.is(plain.peakBytes, 2 * one + gram);
});

test('a key refused alone names the finish in its reason', () => {
  const w = 4096, rows = 256;
  const budget = correlationMemoryBytes(w, 1) + gramTransientBytes(w, rows, 'float32') + 1;
  const p = planCorrelationPasses([key(3, w)], { correlationBudgetBytes: budget, runBudgetBytes: 2 * budget, otherBytes: 0, rows, compute: 'float32' });
  assert.ok(p.refusal, 'refused');
  assert.match(p.refusal!.message, /correlation of fp32 layer 3 \(width 4096\) needs .* \+ 0\.13 GiB to cluster at the finish\), /);
});

test.run();
