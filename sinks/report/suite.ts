/**
 * The cross-task report of the paper's study: several finished runs, one per task (BoolQ, PIQA,
 * HellaSwag, toxicity …), in one page. Figures 1–3a put the tasks side by side as panels; the
 * other figures give each task a row. A task × precision table leads the page with accuracy,
 * confidence, ACE, dead and salient counts (summed over the captured layers) and the high-|r|
 * share, each number taken from that task's summary.json and Parquet files.
 */
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import type { RunData } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatMetric } from './format.ts';
import type { Csv } from './csv.ts';
import { loadRuns, writePage, type ReportFiles } from './page.ts';
import { HIGH_R } from './correlation-data.ts';
import { DEMO_LABEL } from './html.ts';
import { RUN_METRICS, RUN_METRIC_FORMAT, RUN_METRIC_HEADINGS, runPrecisionMetrics, type RunPrecisionMetrics } from './run-metrics.ts';

export interface SuiteReportOptions {
  /** Task labels, one per run folder (default: each run's dataset file name, e.g. "boolq"). */
  tasks?: string[];
  /** Page title (default "quantlens cross-task report: <tasks>"). */
  title?: string;
}

export const HIGH_R_DEFINITION = `high-|r| share: the fraction of MLP neuron pairs whose absolute Pearson correlation is at least ${HIGH_R} (the two top histogram bins, [0.8, 0.9) and [0.9, 1.0]), among all pairs with a defined correlation, summed over the captured layers; pairs undefined because a neuron had zero variance are excluded.`;

function suiteCell(m: (typeof RUN_METRICS)[number], v: RunPrecisionMetrics, task: string, precision: string): string {
  const value = v[m];
  if (value === undefined) return '<td class="missing">–</td>';
  let shown = formatMetric(RUN_METRIC_FORMAT[m], value);
  const extra: string[] = [];
  if (m === 'dead' && v.dead_total !== undefined) { shown += ` / ${formatMetric('total', v.dead_total)}`; extra.push(`data-total="${v.dead_total}"`); }
  if (m === 'salient' && v.salient_unconverged) { shown += ` (⚠${v.salient_unconverged} unconverged)`; }
  if (m === 'salient' && v.salient_unconverged !== undefined) extra.push(`data-unconverged="${v.salient_unconverged}"`);
  return `<td class="num" data-metric="task_${m}" data-task="${escapeText(task)}" data-precision="${escapeText(precision)}" data-value="${dataValue(value)}" ${extra.join(' ')}>${escapeText(shown)}</td>`;
}

/** Rows task × precision; returns HTML and the same numbers as CSV. */
export function suiteTable(runs: RunData[], tasks: string[]): { html: string; csv: Csv } {
  const rows: string[] = [];
  const csv: Csv = { columns: ['task', 'precision', ...RUN_METRICS, 'dead_total', 'salient_unconverged'], rows: [] };
  runs.forEach((run, i) => {
    const precisions = precisionsOf(run);
    precisions.forEach((p, j) => {
      const v = runPrecisionMetrics(run, p);
      const taskCell = j === 0 ? `<th scope="rowgroup" rowspan="${precisions.length}">${escapeText(tasks[i])}</th>` : '';
      rows.push(`<tr>${taskCell}<td>${escapeText(p)}</td>${RUN_METRICS.map((m) => suiteCell(m, v, tasks[i], p)).join('')}</tr>`);
      csv.rows.push([tasks[i], p, ...RUN_METRICS.map((m) => v[m]), v.dead_total, v.salient_unconverged]);
    });
  });
  const head = ['task', 'precision', ...RUN_METRICS.map((m) => RUN_METRIC_HEADINGS[m])];
  return { html: `<table><thead><tr>${head.map((h) => `<th>${escapeText(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`, csv };
}

/**
 * Writes <outDir>/report.html (+ figures/suite-*.svg, tables/suite-*.csv) for finished task runs,
 * one folder per task. outDir must not be one of the task folders (their own report.html stays).
 */
export async function writeSuiteReport(taskRunDirs: string[], outDir: string, opts: SuiteReportOptions = {}): Promise<ReportFiles> {
  if (opts.tasks && opts.tasks.length !== taskRunDirs.length) {
    throw new QuantlensError('CONFIG', `suite report: ${opts.tasks.length} task names for ${taskRunDirs.length} run folders`, 'report --suite');
  }
  const out = path.resolve(outDir);
  const clash = taskRunDirs.find((d) => path.resolve(d) === out);
  if (clash) throw new QuantlensError('CONFIG', 'the suite report folder must differ from every task run folder (it would replace that run\'s report.html)', clash);
  const runs = await loadRuns(taskRunDirs);
  const tasks = opts.tasks ?? runs.map((r) => r.dataset);
  const table = suiteTable(runs, tasks);
  const demo = runs.some((r) => r.summary?.model?.demo === true) ? ` (${DEMO_LABEL})` : '';
  const title = (opts.title ?? `quantlens cross-task report: ${tasks.join(', ')}`) + demo;
  const caption = escapeText(`Per task and precision, from each task's summary.json and Parquet files. Dead and salient neurons are summed over the captured layers (dead shown as dead / total; ⚠ counts attributed examples whose LIG completeness error exceeded 5%). ${HIGH_R_DEFINITION}`);
  return writePage(runs, out, { prefix: 'suite', page: 'report.html', title, lead: [{ id: 'tasks', title: 'Tasks × precisions', html: table.html, csv: table.csv, caption }] });
}
