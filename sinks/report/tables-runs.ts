/**
 * The multi-run comparison table: each headline quantity per precision, one column per run, with
 * its difference to the first run (the baseline of the comparison).
 */
import type { RunData } from './load-run.ts';
import { dataValue, escapeText, formatDelta, formatMetric } from './format.ts';
import { allPrecisions } from './figure-common.ts';
import type { Built } from './tables.ts';
import type { Csv } from './csv.ts';
import { RUN_METRICS, RUN_METRIC_FORMAT, RUN_METRIC_HEADINGS, runPrecisionMetrics } from './run-metrics.ts';

export function acrossRunsTable(runs: RunData[]): Built {
  const csv: Csv = { columns: ['metric', 'precision', 'run', 'value', 'delta_vs_first_run'], rows: [] };
  const rows: string[] = [];
  const metrics = runs.map((run) => new Map(allPrecisions([run]).map((p) => [p, runPrecisionMetrics(run, p)])));
  for (const m of RUN_METRICS) {
    for (const p of allPrecisions(runs)) {
      const values = metrics.map((byP) => byP.get(p)?.[m]);
      if (values.filter((v) => v !== undefined).length < 2) continue;
      const base = values[0];
      const cells = values.map((v, i) => {
        if (v === undefined) return '<td class="missing">–</td>';
        const d = i > 0 && base !== undefined ? v - base : undefined;
        csv.rows.push([m, p, runs[i].name, v, d ?? null]);
        const shown = formatMetric(RUN_METRIC_FORMAT[m], v) + (d !== undefined ? ` (${formatDelta(RUN_METRIC_FORMAT[m], d)})` : '');
        return `<td class="num" data-metric="run_${m}" data-run="${escapeText(runs[i].name)}" data-precision="${escapeText(p)}" data-value="${dataValue(v)}"${d !== undefined ? ` data-delta="${dataValue(d)}"` : ''}>${escapeText(shown)}</td>`;
      });
      rows.push(`<tr><th scope="row">${escapeText(RUN_METRIC_HEADINGS[m])}</th><td>${escapeText(p)}</td>${cells.join('')}</tr>`);
    }
  }
  if (!rows.length) return { html: '', csv };
  const head = ['quantity', 'precision', ...runs.map((r, i) => (i === 0 ? `${r.name} (baseline)` : `${r.name} (Δ vs baseline)`))];
  return { html: `<table><thead><tr>${head.map((h) => `<th>${escapeText(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`, csv };
}
