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
 *   writeReport([run])          → <run>/report.html, <run>/figures/fig*.svg, <run>/tables/*.csv
 *   writeReport([a, b, ...])    → <out>/comparison.html, <out>/figures/comparison-fig*.svg, tables/comparison-*.csv
 *                                 (out = opts.out or the first run dir; a comparison never
 *                                 overwrites that run's own report.html)
 *   writeSuiteReport(tasks, out) → <out>/report.html: the paper's tasks side by side (suite.ts)
 */
import { loadRuns, writePage, type ReportFiles } from './page.ts';
import { acrossRunsTable } from './tables-runs.ts';

export type { ReportFiles } from './page.ts';

export { loadRun } from './load-run.ts';
export type { RunData } from './load-run.ts';
export { buildFigures } from './build-figures.ts';
export { renderHtml, reportTitle, DEMO_LABEL } from './html.ts';
export { writeSuiteReport, type SuiteReportOptions } from './suite.ts';
export { HIGH_R } from './correlation-data.ts';

/**
 * The report of one run (<run>/report.html) or the comparison of several
 * (<out>/comparison.html, figures/comparison-*.svg, tables/comparison-*.csv; out = opts.out or the
 * first run folder). Byte-identical for identical runs: nothing time-dependent is shown.
 */
export async function writeReport(runDirs: string[], opts: { out?: string } = {}): Promise<ReportFiles> {
  const runs = await loadRuns(runDirs);
  const out = opts.out ?? runDirs[0];
  if (runs.length === 1) return writePage(runs, out, { page: 'report.html' });
  const across = acrossRunsTable(runs);
  const lead = across.html ? [{ id: 'across-runs', title: 'Across runs: each quantity per precision, Δ vs the first run', html: across.html, csv: across.csv }] : [];
  return writePage(runs, out, { prefix: 'comparison', page: 'comparison.html', lead });
}
