/**
 * Attribution worker sessions in the pipeline (pipelines/budget.ts withWorkers, pipelines/salience.ts
 * pooled runners): the rule (operators/attribution/lig-parallel.ts autoAttributionWorkers), the
 * budget counting each extra worker's session and lowering the count when it does not fit, the
 * validate line and summary record, and the runners' attributions on the workers bit-identical to
 * one main-thread session with the workers' threads (demo model, no ../shared needed).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { openModelFolder } from '../../sources/model/folder.ts';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { resolveLayers } from '../../onnx/capture.ts';
import { ATTRIBUTION_WORKER_BASELINE_BYTES, estimateMemory, formatMemoryEstimate, memoryRecord, modelShape } from '../../pipelines/budget.ts';
import { autoAttributionWorkers, WORKERS_MAX_WIDTH } from '../../operators/attribution/lig-parallel.ts';
import { preparePlan, releasePlan } from '../../pipelines/plan.ts';
import { createAttributionRunners } from '../../pipelines/salience.ts';
import type { LigResult } from '../../operators/attribution/lig.ts';
import { tempDir } from '../helpers/temp.ts';

const GiB = 1024 ** 3;

test('the rule: one worker per thread on the CPU for widths ≤ WORKERS_MAX_WIDTH; else one session; a forced count wins', () => {
  const cpu = ['cpu'];
  assert.is(autoAttributionWorkers({ threads: 2, width: 172, executionProviders: cpu }).workers, 2);
  assert.is(autoAttributionWorkers({ threads: 4, width: WORKERS_MAX_WIDTH, executionProviders: cpu }).workers, 4);
  assert.is(autoAttributionWorkers({ threads: 4, width: WORKERS_MAX_WIDTH + 1, executionProviders: cpu }).workers, 1);
  assert.is(autoAttributionWorkers({ threads: 1, width: 172, executionProviders: cpu }).workers, 1);
  assert.is(autoAttributionWorkers({ threads: 2, width: 172, executionProviders: ['cuda', 'cpu'] }).workers, 1);
  assert.equal(autoAttributionWorkers({ threads: 2, width: 99_999, executionProviders: cpu, forced: 3 }), { workers: 3, why: 'salience.workers: 3' });
});

async function demo() {
  const folder = await openModelFolder(await ensureDemoModel({ size: 'tiny' }));
  return { folder, m: readOnnxModel(folder.onnxPath) };
}

test('the budget counts each extra worker session and lowers the count when it does not fit', async () => {
  const dir = tempDir('ql-workers-');
  const { folder, m } = await demo();
  try {
    const yaml = (extra: string) => `model: demo\ndataset: {path: demo}\nmeasure: [predictions, salience]\nsession: {intra_op_threads: 2}\nsalience: {schedule: during${extra}}\n`;
    const cfg = (extra = '', budget = '') => parsePipeline(yaml(extra) + budget, path.join(dir, 'p.yaml'));
    const sites = resolveLayers(m, cfg().layers, folder.config, 'layers');
    const shape = modelShape(m, folder.config, folder.vocabSize);
    const one = estimateMemory(m, cfg(', workers: 1'), sites, shape);
    const two = estimateMemory(m, cfg(), sites, shape);
    assert.is(one.salience!.workers, 1);
    assert.is(one.salience!.workersReason, 'salience.workers: 1');
    assert.is(two.salience!.workers, 2, two.salience!.workersReason);
    assert.is(two.salience!.threadsPerWorker, 1);
    assert.is(two.salience!.prepack, one.salience!.prepack);
    const part = (e: typeof one) => e.parts.find((p) => p.name === 'attribution')!;
    // The extra worker: its thread, the step batch of its session (the same rows per run), its layer copies and packed copy, not the mapped weights again.
    const extra = part(two).bytes - part(one).bytes;
    const stepBatch = 9 * cfg().salience.memory_budget_gb * GiB;
    assert.ok(extra >= ATTRIBUTION_WORKER_BASELINE_BYTES + stepBatch && extra < part(one).bytes + ATTRIBUTION_WORKER_BASELINE_BYTES, `extra ${extra}, one session ${part(one).bytes}`);
    assert.is(two.totalBytes - one.totalBytes, extra);
    assert.match(formatMemoryEstimate(two), /\nattribution workers: 2 × 1 thread\(s\) \(2 worker sessions × 1 thread: attributed width \d+ ≤ 2048/);
    const rec = memoryRecord(two).salience as Record<string, unknown>;
    assert.equal([rec.workers, rec.threads_per_worker], [2, 1]);
    // A budget that holds one session but not the second: one session, and the reason says so.
    const tight = estimateMemory(m, cfg('', `memory_budget_gb: ${(one.totalBytes + extra / 2) / GiB}\n`), sites, shape);
    assert.is(tight.salience!.workers, 1);
    assert.is(tight.totalBytes, one.totalBytes);
    assert.match(tight.salience!.workersReason, /^one session: a second worker session \(\+ [\d.]+ GiB\) does not fit the budget$/);
  } finally {
    m.source.close();
  }
});

test('the runners attribute on 2 worker sessions × 1 thread bit-identically to one 1-thread session, and release them', async () => {
  const dir = tempDir('ql-workers-plan-');
  const yaml = (s: string) => `model: demo\ndataset: {path: demo, limit: 2}\nprecisions: [fp32, nf4]\nmeasure: [predictions, salience]\nlayers: [0, 1]\noutput: ${path.join(dir, 'out')}\n${s}`;
  const examples = [Int32Array.of(1, 5, 9, 13, 2, 7), Int32Array.of(1, 4, 4, 8), Int32Array.of(1, 3, 11, 6, 9, 10, 12), Int32Array.of(1, 6, 2, 8)].map((ids) => ({ ids }));
  const results: LigResult[][][] = [];
  for (const settings of ['session: {intra_op_threads: 2}\n', 'session: {intra_op_threads: 1}\nsalience: {workers: 1}\n']) {
    const plan = await preparePlan(parsePipeline(yaml(settings), path.join(dir, 'p.yaml')), { cacheDir: path.join(dir, 'cache') });
    try {
      const runners = await createAttributionRunners(plan);
      const mine: LigResult[][] = [];
      try {
        for (const r of runners) mine.push(await r.attribute(examples, { steps: 6, memoryBudgetBytes: 1 << 20, onWarning: () => undefined }));
      } finally {
        for (const r of runners) await r.release();
      }
      assert.is(runners.length, 4);
      results.push(mine);
      if (results.length === 1) assert.is(plan.memory!.salience!.workers, 2, plan.memory!.salience!.workersReason);
    } finally {
      await releasePlan(plan);
    }
  }
  const [workers, one] = results;
  workers.forEach((rs, k) =>
    rs.forEach((r, i) => {
      const w = one[k][i];
      assert.equal([r.target, r.F_input, r.F_baseline, r.completenessError], [w.target, w.F_input, w.F_baseline, w.completenessError], `runner ${k} example ${i}`);
      assert.ok(Buffer.from(r.attributions.buffer, r.attributions.byteOffset, r.attributions.byteLength).equals(Buffer.from(w.attributions.buffer, w.attributions.byteOffset, w.attributions.byteLength)), `runner ${k} example ${i}: bit-identical`);
    }),
  );
});

test.run();
