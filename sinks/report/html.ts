/**
 * The self-contained report page: inline CSS, inline SVG figures, no scripts, no external URLs,
 * so it opens offline from disk and can be archived as one file.
 */
import type { RunData } from './load-run.ts';
import type { Figure } from './figure-common.ts';
import type { Table } from './tables.ts';
import { buildTables } from './build-tables.ts';
import { escapeText } from './format.ts';

export const DEMO_LABEL = 'demo model, random weights';

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;margin:24px auto;max-width:1160px;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:1.05em;margin:20px 0 6px}
.subtitle{color:#555;margin:0 0 16px}.demo{background:#fff4d6;border:1px solid #e0b84a;padding:6px 10px;border-radius:4px;display:inline-block}
figure{margin:16px 0 24px;overflow-x:auto}figure svg{display:block;max-width:none}figcaption{color:#444;font-size:.92em;margin-top:6px;max-width:1000px}
table{border-collapse:collapse;margin:6px 0 16px;font-size:.9em}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.missing{color:#999;text-align:center}.nowrap{white-space:nowrap}
a.csv{font-size:.8em;font-weight:400;margin-left:8px}td.delta{color:#444}td.flag{color:#a0522d;white-space:nowrap;border-left:none}.note{color:#555;font-size:.9em;margin:2px 0}
table.meta th{background:#fafafa;font-weight:600;white-space:nowrap}table.meta td{max-width:820px;overflow-wrap:anywhere}
`;

/** Title used for the page: says "demo model, random weights" whenever a run used the demo model. */
export function reportTitle(runs: RunData[]): string {
  const base = runs.length === 1 ? `quantlens report: ${runs[0].name}` : `quantlens comparison: ${runs.length} runs`;
  const demo = runs.some((r) => r.summary?.model?.demo === true);
  return demo ? `${base} (${DEMO_LABEL})` : base;
}

/** A table placed before the figures (the cross-task or across-runs table). */
export interface LeadTable { id: string; title: string; html: string; caption?: string; csvHref?: string }

export interface RenderOptions {
  /** Page title; default from reportTitle(runs). */
  title?: string;
  lead?: LeadTable[];
  /** Per run, its tables (default buildTables(run)). */
  runTables?: Table[][];
  /** Relative link to a table's CSV, or undefined for none. */
  csvHref?: (runIndex: number, tableId: string) => string | undefined;
}

function tableBlock(id: string, title: string, html: string, tag: string, href?: string, note?: string): string {
  const link = href ? `<a class="csv" href="${escapeText(href)}" download>CSV</a>` : '';
  return `<div class="table" data-table="${escapeText(id)}"><${tag}>${escapeText(title)}${link}</${tag}>${note ? `<p class="note">${escapeText(note)}</p>` : ''}${html}</div>`;
}

function header(runs: RunData[], title: string): string {
  const demo = runs.filter((r) => r.summary?.model?.demo === true);
  const parts = [`<header><h1 id="report-title">${escapeText(title)}</h1>`];
  parts.push(`<p class="subtitle">Effects of quantization on an LLM's predictions, calibration and MLP neurons (after Singh &amp; Sajjad 2025). ` +
    `Runs: ${runs.map((r) => `<span class="run-name">${escapeText(r.name)}</span> (${escapeText(r.model)} on ${escapeText(r.dataset)})`).join(', ')}.</p>`);
  if (demo.length) {
    parts.push(`<p class="demo">${escapeText(demo.length === runs.length ? `This report uses a ${DEMO_LABEL}: the numbers exercise the pipeline and say nothing about a real model.` : `Runs ${demo.map((r) => r.name).join(', ')} use a ${DEMO_LABEL}.`)}</p>`);
  }
  parts.push('</header>');
  return parts.join('\n');
}

function runTablesSection(runs: RunData[], runTables: Table[][], csvHref: RenderOptions['csvHref']): string[] {
  const out: string[] = [];
  runs.forEach((run, i) => {
    const tables = runTables[i];
    if (!tables.length) return;
    out.push(`<div class="run-tables" data-run="${escapeText(run.name)}">`);
    if (runs.length > 1) out.push(`<h3 class="run-heading">${escapeText(run.name)} — ${escapeText(run.model)} on ${escapeText(run.dataset)}</h3>`);
    const tag = runs.length > 1 ? 'h4' : 'h3';
    for (const t of tables) out.push(tableBlock(t.id, t.title, t.html, tag, csvHref?.(i, t.id), t.note));
    out.push('</div>');
  });
  return out.length ? ['<section id="tables"><h2>Tables</h2>', ...out, '</section>'] : [];
}

export function renderHtml(runs: RunData[], figures: Figure[], opts: RenderOptions = {}): string {
  const title = opts.title ?? reportTitle(runs);
  const parts: string[] = [];
  parts.push(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">`);
  parts.push(`<title>${escapeText(title)}</title><style>${CSS}</style></head><body>`);
  parts.push(header(runs, title));
  for (const t of opts.lead ?? []) {
    parts.push(`<section id="${escapeText(t.id)}"><h2>${escapeText(t.title)}${t.csvHref ? `<a class="csv" href="${escapeText(t.csvHref)}" download>CSV</a>` : ''}</h2>`);
    parts.push(`<div class="table" data-table="${escapeText(t.id)}">${t.caption ? `<p class="note">${t.caption}</p>` : ''}${t.html}</div></section>`);
  }
  if (figures.length) {
    parts.push('<section id="figures"><h2>Figures</h2>');
    for (const f of figures) parts.push(`<figure id="${escapeText(f.id)}">${f.svg}<figcaption>${f.caption}</figcaption></figure>`);
    parts.push('</section>');
  }
  parts.push(...runTablesSection(runs, opts.runTables ?? runs.map((r) => buildTables(r)), opts.csvHref));
  parts.push('</body></html>\n');
  return parts.join('\n');
}
