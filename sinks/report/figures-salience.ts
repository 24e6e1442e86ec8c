/**
 * Figure 7: how complete the salience attributions are. Layer Integrated Gradients should give
 * Σ attribution = F(input) − F(baseline); the relative error per example says whether the
 * quadrature converged. Per layer and precision: min–max whisker, median–p90 box, the 5% flag line,
 * and "k/n" unconverged examples above each mark (the same flags Figure 6 and the table carry).
 */
import type { RunData } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { dataValue, escapeText } from './format.ts';
import { coloursFor, figure, type Panel } from './svg.ts';
import { rangePanel, type RangeDatum } from './svg-range.ts';
import { allPrecisions, precisionLegend, widthFor, type Figure } from './figure-common.ts';
import { COMPLETENESS_THRESHOLD, salientCounts } from './salience-data.ts';

function pct(v: number): string {
  return Number.isFinite(v) ? `${Number((v * 100).toPrecision(3))}%` : 'n/a';
}

export function completenessFigure(runs: RunData[]): Figure | null {
  const precisions = allPrecisions(runs);
  const colours = coloursFor(precisions);
  const width = widthFor(runs.length, 4);
  const panels: Panel[] = [];
  const used = new Set<string>();
  for (const run of runs) {
    const order = precisionsOf(run);
    const counts = salientCounts(run).filter((c) => c.completeness).sort((a, b) => a.layer - b.layer || order.indexOf(a.precision) - order.indexOf(b.precision));
    if (!counts.length) continue;
    const data: RangeDatum[] = counts.map((c) => {
      const k = c.completeness!;
      used.add(c.precision);
      return {
        group: String(c.layer), series: c.precision, min: k.min, median: k.median, p90: k.p90, max: k.max,
        label: `${k.unconverged > 0 ? '⚠' : ''}${k.unconverged}/${k.count}`,
        tooltip: `${run.name} · ${c.precision} · layer ${c.layer}: completeness error min ${pct(k.min)}, median ${pct(k.median)}, p90 ${pct(k.p90)}, max ${pct(k.max)}; ${k.unconverged} of ${k.count} examples unconverged`,
        data: {
          'data-metric': 'completeness', 'data-run': run.name, 'data-precision': c.precision, 'data-layer': c.layer, 'data-value': dataValue(k.median),
          'data-min': dataValue(k.min), 'data-median': dataValue(k.median), 'data-p90': dataValue(k.p90), 'data-max': dataValue(k.max),
          'data-count': k.count, 'data-unconverged': k.unconverged, 'data-above': k.above_threshold,
        },
      };
    });
    const groups = [...new Set(counts.map((c) => c.layer))].map((l) => ({ key: String(l), label: `layer ${l}` }));
    const title = runs.length > 1 ? run.name : `${run.model} · ${run.dataset}`;
    panels.push(rangePanel({ title, yLabel: 'completeness error (log scale)', groups, series: precisions, colours, data, threshold: COMPLETENESS_THRESHOLD, width }));
  }
  if (!panels.length) return null;
  const id = 'fig7-completeness';
  const title = 'Figure 7. Salience completeness: relative error of Σ attribution vs F(input) − F(baseline)';
  const caption = `Per layer and precision: whisker from the smallest to the largest error over the attributed examples, box from the median (thick line) to the 90th percentile; dashed line: the ${pct(COMPLETENESS_THRESHOLD)} flag threshold. Above each mark: unconverged / attributed examples (⚠ when any). Unconverged examples can change which neurons count as salient; salience.adaptive: true adds steps until the error is below 1%.`;
  return { id, title, caption: escapeText(caption), svg: figure({ id, title, legend: [...precisionLegend(precisions.filter((p) => used.has(p)), colours), { label: '5% threshold', dashed: '#D55E00' }], panels }) };
}
