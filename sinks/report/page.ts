/**
 * Writing one report page: load and check the run folders, then figures, per-run tables with
 * their CSVs and the HTML, each file atomically. Shared by the single-run, comparison and
 * cross-task reports.
 */
import path from 'node:path';
import { writeFileAtomically } from '../../core/atomic-write.ts';
import { QuantlensError } from '../../core/errors.ts';
import { hasAnyInput, loadRun, type RunData } from './load-run.ts';
import { buildFigures } from './build-figures.ts';
import { renderHtml, type LeadTable } from './html.ts';
import { buildTables } from './build-tables.ts';
import { csvFileName, csvText, type Csv } from './csv.ts';

/** Run names label panels and tables, so two runs must never share one. */
function makeNamesUnique(runs: RunData[]): void {
  const seen = new Map<string, number>();
  for (const run of runs) {
    const n = (seen.get(run.name) ?? 0) + 1;
    seen.set(run.name, n);
    if (n > 1) run.name = `${run.name} (${n})`;
  }
}

export interface ReportFiles { html: string; figures: string[]; tables: string[] }

/** Load and check run folders: each must hold something the report can draw. */
export async function loadRuns(runDirs: string[]): Promise<RunData[]> {
  if (!runDirs.length) throw new QuantlensError('CONFIG', 'writeReport needs at least one run folder', 'report');
  const runs = await Promise.all(runDirs.map((d) => loadRun(d)));
  for (const run of runs) {
    if (!hasAnyInput(run)) {
      throw new QuantlensError('IO', 'run folder holds none of summary.json, predictions/calibration/neurons/dead/correlation/agreement/salience.parquet', run.dir);
    }
  }
  makeNamesUnique(runs);
  return runs;
}

/**
 * Figures, per-run tables and their CSVs, then the page; every file written atomically.
 * `prefix` names the files of a multi-run page ("comparison", "suite") so they never replace a
 * run's own report files.
 */
export async function writePage(runs: RunData[], out: string, o: { prefix?: string; page: string; title?: string; lead?: (LeadTable & { csv?: Csv })[] }): Promise<ReportFiles> {
  const figures = buildFigures(runs);
  const figurePaths: string[] = [];
  for (const f of figures) {
    const file = path.join(out, 'figures', `${o.prefix ? `${o.prefix}-` : ''}${f.id}.svg`);
    await writeFileAtomically(file, `<?xml version="1.0" encoding="UTF-8"?>\n${f.svg}\n`);
    figurePaths.push(file);
  }
  const tablePaths: string[] = [];
  const writeCsv = async (name: string, csv: Csv) => {
    const file = path.join(out, 'tables', name);
    await writeFileAtomically(file, csvText(csv));
    tablePaths.push(file);
    return `tables/${name}`;
  };
  const lead: LeadTable[] = [];
  for (const t of o.lead ?? []) lead.push({ ...t, csvHref: t.csv ? await writeCsv(`${o.prefix ? `${o.prefix}-` : ''}${t.id}.csv`, t.csv) : undefined });
  const runTables = runs.map((r) => buildTables(r));
  const hrefs = new Map<string, string>();
  for (const [i, tables] of runTables.entries()) {
    for (const t of tables) if (t.csv) hrefs.set(`${i}\u0000${t.id}`, await writeCsv(csvFileName(t.id, i, o.prefix), t.csv));
  }
  const html = path.join(out, o.page);
  await writeFileAtomically(html, renderHtml(runs, figures, { title: o.title, lead, runTables, csvHref: (i, id) => hrefs.get(`${i}\u0000${id}`) }));
  return { html, figures: figurePaths, tables: tablePaths };
}

