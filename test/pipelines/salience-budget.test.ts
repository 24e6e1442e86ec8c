/**
 * `salience.memory_budget_gb`: validated like the other keys (file, line, key), a zero budget
 * refused before any work, and a budget below one attribution row refused in one line naming the
 * key, with nothing left under a final name (demo model, no ../shared needed).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parsePipeline } from '../../pipelines/load.ts';
import { ATTRIBUTION_STEP_FACTOR, attributionStepFactor } from '../../pipelines/budget.ts';
import { attributionRowBytes } from '../../operators/attribution/lig.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { expectRejects, expectThrows } from '../helpers/expect-error.ts';
import { tempDir } from '../helpers/temp.ts';

const yaml = (budget: string, out: string) => `model: demo\ndataset:\n  path: demo\n  limit: 3\nmeasure: [predictions, salience]\nsalience:\n  steps: 4\n  memory_budget_gb: ${budget}\noutput: ${out}\n`;

test('schema: default 0.02; a negative or non-number budget names file, line and key', () => {
  const dir = tempDir('ql-sal-budget-');
  assert.is(parsePipeline(`model: demo\ndataset: {path: demo}\n`, path.join(dir, 'p.yaml')).salience.memory_budget_gb, 0.02);
  expectThrows(() => parsePipeline(yaml('-1', 'out'), path.join(dir, 'p.yaml')), { code: 'CONFIG', message: /p\.yaml:8: salience\.memory_budget_gb: must be ≥ 0$/ });
  expectThrows(() => parsePipeline(yaml('lots', 'out'), path.join(dir, 'p.yaml')), { code: 'CONFIG', message: /p\.yaml:8: salience\.memory_budget_gb: must be a number$/ });
});

test('run: a zero budget is refused before any work; a budget below one row is refused naming the key, nothing written', async () => {
  const dir = tempDir('ql-sal-budget-');
  for (const [budget, want] of [
    ['0', { code: 'CONFIG', message: /^p\.yaml: salience\.memory_budget_gb: must be > 0/ }],
    ['0.000000001', { code: 'BUDGET', message: /salience\.memory_budget_gb.*below one row of \d+ tokens/ }],
  ] as const) {
    const out = path.join(dir, `out-${budget}`);
    const cfg = parsePipeline(yaml(budget, out), path.join(dir, 'p.yaml'));
    await expectRejects(runPipeline(cfg, { quiet: true, report: false, cacheDir: path.join(dir, 'cache'), log: () => undefined }), want);
    assert.not.ok(existsSync(out), `${budget}: no output folder left`);
  }
});

test('the step factor covers the per-row peaks measured at 0.1B and 0.5B, and stays 9 where logits dominate a row or the shape is unknown', () => {
  const MiB = 1024 ** 2;
  const S = 69; // bench/attribution-rows.ts: layer 0, a 69-token prompt; MiB per extra row of an attribution run
  for (const { shape, F, measuredPerRow } of [
    { shape: { vocab: 32000, hidden: 768, layers: 8 }, F: 2048, measuredPerRow: 41.5 * MiB },
    { shape: { vocab: 32000, hidden: 1536, layers: 16 }, F: 4096, measuredPerRow: 159 * MiB },
  ]) {
    const rowUnit = attributionRowBytes(S, F, shape.vocab);
    const factor = attributionStepFactor(shape, F);
    assert.ok(factor * rowUnit >= measuredPerRow, `L ${shape.layers}: ${factor.toFixed(1)} × ${(rowUnit / MiB).toFixed(1)} MiB covers ${measuredPerRow / MiB} MiB`);
    if (factor > ATTRIBUTION_STEP_FACTOR) assert.ok(factor * rowUnit <= 1.5 * measuredPerRow, `L ${shape.layers}: not wildly above the measured row`);
  }
  assert.is(attributionStepFactor({ vocab: 32000, hidden: 256, layers: 4 }, 1024), ATTRIBUTION_STEP_FACTOR); // logits dominate the row: the floor
  assert.is(attributionStepFactor({ vocab: 512, hidden: 0, layers: 0 }, 1024), ATTRIBUTION_STEP_FACTOR);
});

test.run();
