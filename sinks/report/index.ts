/**
 * Report sink: after a run, writes the paper's figures (Figures 1–4) as standalone SVGs under
 * figures/ and one self-contained report.html beside the Parquet files.
 *
 * Why hand-written SVG rather than Vega-Lite: the report must work offline with no scripts and no
 * CDN, and Vega-Lite needs its JS runtime (≈1 MB, plus a headless renderer to produce static
 * SVG) — a dependency we would have to install and vendor. The charts here are bars, whiskers and
 * reliability diagrams, which are a few hundred lines of SVG; writing them directly keeps the
 * output deterministic, diff-able, and lets every mark carry data-* attributes that tests compare
 * with the Parquet files exactly.
 *
 *   writeReport([run])          → <run>/report.html, <run>/figures/fig*.svg
 *   writeReport([a, b, ...])    → <out>/comparison.html, <out>/figures/comparison-fig*.svg
 *                                 (out = opts.out or the first run dir; a comparison never
 *                                 overwrites that run's own report.html)
 */
import path from 'node:path';
import { writeFileAtomically } from '../../core/atomic-write.ts';
import { QuantlensError } from '../../core/errors.ts';
import { hasAnyInput, loadRun, type RunData } from './load-run.ts';
import { buildFigures } from './figures.ts';
import { renderHtml } from './html.ts';

export { loadRun } from './load-run.ts';
export type { RunData } from './load-run.ts';
export { buildFigures } from './figures.ts';
export { renderHtml, reportTitle, DEMO_LABEL } from './html.ts';

/** Run names label panels and tables, so two runs must never share one. */
function makeNamesUnique(runs: RunData[]): void {
  const seen = new Map<string, number>();
  for (const run of runs) {
    const n = (seen.get(run.name) ?? 0) + 1;
    seen.set(run.name, n);
    if (n > 1) run.name = `${run.name} (${n})`;
  }
}

export async function writeReport(runDirs: string[], opts: { out?: string } = {}): Promise<{ html: string; figures: string[] }> {
  if (!runDirs.length) throw new QuantlensError('CONFIG', 'writeReport needs at least one run folder', 'report');
  const runs = await Promise.all(runDirs.map((d) => loadRun(d)));
  for (const run of runs) {
    if (!hasAnyInput(run)) {
      throw new QuantlensError('IO', 'run folder holds none of summary.json, predictions/calibration/neurons/dead/correlation/agreement/salience.parquet', run.dir);
    }
  }
  makeNamesUnique(runs);
  const comparison = runs.length > 1;
  const out = opts.out ?? runDirs[0];
  const figures = buildFigures(runs);
  const figurePaths: string[] = [];
  for (const f of figures) {
    const file = path.join(out, 'figures', `${comparison ? 'comparison-' : ''}${f.id}.svg`);
    await writeFileAtomically(file, `<?xml version="1.0" encoding="UTF-8"?>\n${f.svg}\n`);
    figurePaths.push(file);
  }
  const html = path.join(out, comparison ? 'comparison.html' : 'report.html');
  await writeFileAtomically(html, renderHtml(runs, figures));
  return { html, figures: figurePaths };
}
