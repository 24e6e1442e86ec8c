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

test.run();
