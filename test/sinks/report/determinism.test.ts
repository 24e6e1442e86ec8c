/**
 * Issue 14 item 6: two identical runs of a real pipeline (the demo model, all measures, salience
 * on a few examples) into different folders give byte-identical report.html, figures and CSVs.
 * Wall time and throughput, which differ, stay in summary.json (checked to differ here, so the
 * test would catch them leaking into the report).
 */
import { test } from 'uvu';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadPipeline } from '../../../pipelines/load.ts';
import { runPipeline } from '../../../pipelines/run.ts';
import { tempDir } from '../../helpers/temp.ts';

const QUICKSTART = path.resolve(import.meta.dirname, '..', '..', '..', 'pipelines', 'examples', 'quickstart.yaml');

async function runInto(dir: string): Promise<void> {
  const cfg = loadPipeline(QUICKSTART);
  cfg.output = dir;
  cfg.precisions = ['fp32', 'nf4'];
  cfg.dataset.limit = 12;
  cfg.salience.limit = 3;
  cfg.salience.steps = 8;
  // A fresh cache per run: both quantize on first use, as two runs on two machines would.
  await runPipeline(cfg, { quiet: true, cacheDir: tempDir('quantlens-det-cache-'), log: () => undefined });
}

function reportFiles(dir: string): string[] {
  return ['report.html', ...readdirSync(path.join(dir, 'figures')).map((f) => `figures/${f}`), ...readdirSync(path.join(dir, 'tables')).map((f) => `tables/${f}`)].sort();
}

test('two identical demo runs write byte-identical reports', async () => {
  const root = tempDir('quantlens-det-');
  const a = path.join(root, 'a'), b = path.join(root, 'b');
  await runInto(a);
  await runInto(b);
  const files = reportFiles(a);
  assert.deepEqual(reportFiles(b), files);
  assert.ok(files.includes('figures/fig7-completeness.svg') && files.includes('tables/flips.csv'), files.join(' '));
  for (const f of files) assert.ok(readFileSync(path.join(a, f)).equals(readFileSync(path.join(b, f))), `${f} differs between identical runs`);
  const sa = JSON.parse(readFileSync(path.join(a, 'summary.json'), 'utf8')), sb = JSON.parse(readFileSync(path.join(b, 'summary.json'), 'utf8'));
  assert.notEqual(sa.wall_seconds, sb.wall_seconds, 'the runs\' wall times differ, yet the reports are identical');
});

test.run();
