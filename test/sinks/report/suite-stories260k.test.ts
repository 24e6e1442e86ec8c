/**
 * The cross-task report on real runs: stories260K at fp32, nf4 and llm-int8 over the paper's
 * four task CSVs (first 8 prompts each; salience, the costly measure, on one BoolQ prompt with
 * 4 steps), then writeSuiteReport. Every number of
 * the task × precision table is checked against the task's own files read independently —
 * Parquet through DuckDB, summary.json as JSON — and, when Chromium is present, the page opens
 * offline with no console errors and no requests. Skips with one line without ../shared.
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadPipeline } from '../../../pipelines/load.ts';
import { runPipeline } from '../../../pipelines/run.ts';
import { writeSuiteReport } from '../../../sinks/report/index.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { duckdbQuery } from '../../helpers/duckdb.ts';
import { marks, tableHtml } from './html-marks.ts';
import { tempDir } from '../../helpers/temp.ts';

const EXAMPLE = path.resolve(import.meta.dirname, '..', '..', '..', 'pipelines', 'examples', 'boolq-stories260k.yaml');
const TASKS = ['boolq', 'piqa', 'hellaswag', 'toxicity'];
const PRECISIONS = ['fp32', 'nf4', 'llm-int8'];

async function runTask(task: string, datasets: string, root: string, cache: string): Promise<string> {
  const cfg = loadPipeline(EXAMPLE);
  const measure = ['predictions', 'neurons', 'calibration', 'dead', 'correlation', 'agreement', ...(task === 'boolq' ? ['salience'] : [])];
  Object.assign(cfg, { name: `paper-${task}`, output: path.join(root, task), precisions: PRECISIONS, measure });
  Object.assign(cfg.dataset, { path: path.join(datasets, `${task}.csv`), prompt: '{prompt}', limit: 8 });
  Object.assign(cfg.salience, { limit: 1, steps: 4 });
  await runPipeline(cfg, { quiet: true, cacheDir: cache, log: () => undefined });
  return cfg.output;
}

/** The table's numbers for one task, from its files alone. */
async function fromFiles(dir: string, p: string): Promise<Record<string, number | undefined>> {
  const summary = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8'));
  const q = (sql: string) => duckdbQuery(sql.replaceAll('$D', dir).replaceAll('$P', p));
  const [dead] = await q(`select sum(dead_count)::double as d from '$D/dead.parquet' where precision = '$P'`);
  const sal = existsSync(path.join(dir, 'salience.parquet'))
    ? (await q(`select count(distinct layer || ':' || neuron)::double as s from '$D/salience.parquet' where precision = '$P' and salient_examples > 0`))[0].s as number
    : undefined;
  const [corr] = await q(`select (sum(pairs) filter (where bin_lo >= 0.8))::double / sum(pairs)::double as share from '$D/correlation.parquet' where precision = '$P' and bin_lo is not null`);
  const [pred] = await q(`select avg(correct::int)::double as acc, avg(confidence) as conf from '$D/predictions.parquet' where precision = '$P'`);
  assert.ok(Math.abs((pred.acc as number) - summary.precisions[p].accuracy) < 1e-12, 'summary accuracy = predictions.parquet');
  assert.ok(Math.abs((pred.conf as number) - summary.precisions[p].mean_confidence) < 1e-12, 'summary confidence = predictions.parquet');
  return {
    accuracy: summary.precisions[p].accuracy, mean_confidence: summary.precisions[p].mean_confidence, ace: summary.precisions[p].ace,
    dead: dead.d as number, salient: sal, high_r_share: corr.share as number,
  };
}

test('four paper tasks on stories260K: the suite table equals each task\'s Parquet and summary files', async () => {
  const model = sharedPath('models/stories260K-onnx', 'suite report on stories260K');
  const datasets = sharedPath('datasets', 'suite report on stories260K');
  if (!model || !datasets) return;
  const root = tempDir('quantlens-paper-real-');
  const cache = tempDir('quantlens-paper-cache-');
  const dirs: string[] = [];
  for (const t of TASKS) dirs.push(await runTask(t, datasets, root, cache));
  const res = await writeSuiteReport(dirs, path.join(root, 'suite'));
  const html = readFileSync(res.html, 'utf8');
  const ms = marks(tableHtml(html, 'tasks')!);
  // Salience ran for BoolQ only: the other tasks' salient cells are empty ("–"), not zero.
  assert.equal(ms.length, TASKS.length * PRECISIONS.length * 5 + PRECISIONS.length);
  for (const [i, t] of TASKS.entries()) {
    for (const p of PRECISIONS) {
      const want = await fromFiles(dirs[i], p);
      for (const [k, v] of Object.entries(want)) {
        const m = ms.find((x) => x.attrs['data-metric'] === `task_${k}` && x.attrs['data-task'] === t && x.attrs['data-precision'] === p)!;
        if (v === undefined) { assert.equal(m, undefined, `${t} ${p} ${k}: no data, yet a number is shown`); continue; }
        assert.ok(m, `${t} ${p} ${k} missing`);
        assert.ok(Math.abs(Number(m.attrs['data-value']) - v) <= 1e-12 * Math.max(1, Math.abs(v)), `${t} ${p} ${k}: shows ${m.attrs['data-value']}, files say ${v}`);
      }
    }
  }
  if (!existsSync('/usr/bin/chromium')) { console.log('SKIP suite report in Chromium: /usr/bin/chromium is absent'); return; }
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [], requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto('file://' + res.html, { waitUntil: 'load' });
    const shown = await page.evaluate(() => [...document.querySelectorAll('[data-metric^="task_"]')].length);
    assert.deepEqual(errors, []);
    assert.deepEqual(requests.filter((u) => u !== 'file://' + res.html), []);
    assert.equal(shown, ms.length);
  } finally {
    await browser.close();
  }
});

test.run();
