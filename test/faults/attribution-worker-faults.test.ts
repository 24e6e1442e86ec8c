/**
 * An attribution worker thread that dies (operators/attribution/lig-parallel.ts) through the real
 * CLI: its thread exiting before it answers, an uncaught error in it, and its thread ending while
 * the pool is idle between runners (QUANTLENS_FAULT=worker:…, core/fault-point.ts). Each gives one
 * stderr line naming the worker, a non-zero exit, no hang (the other worker is closed), and nothing
 * under a final name; the same folder then runs to completion without the fault. The runs start in
 * the case folder, outside the clone, where the workers once failed to import tsx.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { assertNothingLeft, caseDir, cli, expectCliFailure } from './harness.ts';
import { ParallelAttribution } from '../../operators/attribution/lig-parallel.ts';
import { ensureDemoModel } from '../../sources/demo/demo-model.ts';
import { readOnnxModel } from '../../onnx/model-reader.ts';
import { findMlpSites } from '../../onnx/mlp-sites.ts';
import { defaultSessionSettings } from '../../onnx/session.ts';
import { expectRejects } from '../helpers/expect-error.ts';
import { tempDir } from '../helpers/temp.ts';

// Two layers: two runners share the pool, so a thread that ends after its first reply is found
// gone by the second runner's request (or by the park between them).
const PIPELINE = [
  'model: demo',
  'dataset: {path: demo, limit: 3}',
  'precisions: [fp32]',
  'measure: [predictions, salience]',
  'layers: [0, 1]',
  'session: {intra_op_threads: 2}',
  'salience: {steps: 2, workers: 2}',
  'output: out',
  '',
].join('\n');

const CASES: [fault: string, message: RegExp][] = [
  ['worker:exit:start:1', /^quantlens: attribution worker [12] of 2 exited \(code 70\) before it answered$/],
  ['worker:throw:start:1', /^quantlens: attribution worker [12] of 2 failed: QUANTLENS_FAULT worker:throw:start:1$/],
  ['worker:exit:after:1', /^quantlens: attribution worker [12] of 2 exited \(code 70\) (before it answered|while idle)$/],
];

for (const [fault, message] of CASES) {
  test(`a worker's thread ending (${fault}): one line naming the worker, exit ≠ 0, nothing left; then the run completes`, () => {
    const dir = caseDir({ 'p.yaml': PIPELINE });
    const env = { QUANTLENS_CACHE: path.join(dir, 'cache') };
    expectCliFailure(cli(['run', 'p.yaml', '--no-report'], dir, { ...env, QUANTLENS_FAULT: fault }), message);
    assertNothingLeft(dir, path.join(dir, 'out'), ['cache']);
    const ok = cli(['run', 'p.yaml', '--no-report'], dir, env);
    assert.is(ok.code, 0, ok.lines.join('\n'));
    assert.ok(existsSync(path.join(dir, 'out', 'salience.parquet')), 'salience.parquet after the clean run');
  });
}

test('a worker whose thread ended while the pool was idle: the next request is refused at once, naming it', async () => {
  const dir = await ensureDemoModel();
  const model = path.join(dir, 'model.onnx');
  const g = readOnnxModel(model);
  const tensor = findMlpSites(g)[0].tensor;
  g.source.close();
  const options = { settings: { ...defaultSessionSettings(), intraOpThreads: 1 }, cacheDir: tempDir('ql-worker-idle-') };
  const examples = [{ ids: Int32Array.of(1, 5, 9, 13) }, { ids: Int32Array.of(1, 4, 4, 8, 2, 7) }];
  // Workers copy the environment when they start: only these two see the fault.
  process.env.QUANTLENS_FAULT = 'worker:exit:after:1';
  let runner: ParallelAttribution;
  try {
    runner = await ParallelAttribution.start({ model, tensor, options }, 2);
  } finally {
    delete process.env.QUANTLENS_FAULT;
  }
  const first = await runner.attribute(examples, tensor, { steps: 2, onWarning: () => undefined });
  assert.is(first.length, 2, 'the first request is answered');
  // Both threads end right after their reply; give their exits time to arrive.
  await new Promise((r) => setTimeout(r, 500));
  await expectRejects(runner.attribute(examples, tensor, { steps: 2 }), { message: /^attribution worker [12] of 2 exited \(code 70\) while idle$/ });
  assert.is(runner.workers, 0, 'the pool is closed');
});

test.run();
