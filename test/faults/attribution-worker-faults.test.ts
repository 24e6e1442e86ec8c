/**
 * An attribution worker thread that dies (operators/attribution/lig-parallel.ts) through the real
 * CLI: its thread exiting before it answers, an uncaught error in it, and its thread ending while
 * the pool is idle between runners (QUANTLENS_FAULT=worker:…, core/fault-point.ts). Each gives one
 * stderr line naming the worker, a non-zero exit, no hang (the other worker is closed), and nothing
 * under a final name; the same folder then runs to completion without the fault.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { assertNothingLeft, caseDir, cli, expectCliFailure } from './harness.ts';

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

test.run();
