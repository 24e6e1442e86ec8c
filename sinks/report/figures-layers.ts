/**
 * The paper's dead-neuron and salient-neuron figures: count per captured layer (groups) and
 * precision (bars), one panel per run. Salient counts whose attributions include unconverged
 * examples (LIG completeness error above 5%) carry a "⚠k/n" flag beside the number.
 */
import type { RunData } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatMetric } from './format.ts';
import { barPanel, coloursFor, figure, type BarDatum, type Panel } from './svg.ts';
import { allPrecisions, precisionLegend, widthFor, type Figure } from './figure-common.ts';
import { salientCounts, unconvergedFlag } from './salience-data.ts';

interface LayerCount { precision: string; layer: number; value: number; label: string; tooltip: string; data: Record<string, string | number | undefined> }

function layerPanel(run: RunData, runs: RunData[], counts: LayerCount[], yLabel: string, width: number): Panel {
  const precisions = allPrecisions(runs);
  const layers = [...new Set(counts.map((c) => c.layer))].sort((a, b) => a - b);
  const bars: BarDatum[] = counts.map((c) => ({ group: String(c.layer), series: c.precision, value: c.value, label: c.label, tooltip: c.tooltip, data: { ...c.data, 'data-run': run.name } }));
  const groups = layers.map((l) => ({ key: String(l), label: `layer ${l}` }));
  return barPanel({ title: runs.length > 1 ? run.name : `${run.model} · ${run.dataset}`, yLabel, xLabel: 'decoder layer', groups, series: precisions, colours: coloursFor(precisions), bars, width });
}

function layerFigure(runs: RunData[], id: string, title: string, caption: string, yLabel: string, countsOf: (run: RunData) => LayerCount[]): Figure | null {
  const width = widthFor(runs.length, 4);
  const panels: Panel[] = [];
  const used = new Set<string>();
  for (const run of runs) {
    const order = precisionsOf(run);
    const counts = countsOf(run).sort((a, b) => a.layer - b.layer || order.indexOf(a.precision) - order.indexOf(b.precision));
    if (!counts.length) continue;
    for (const c of counts) used.add(c.precision);
    panels.push(layerPanel(run, runs, counts, yLabel, width));
  }
  if (!panels.length) return null;
  const precisions = allPrecisions(runs).filter((p) => used.has(p));
  return { id, title, caption: escapeText(caption), svg: figure({ id, title, legend: precisionLegend(precisions, coloursFor(allPrecisions(runs))), panels }) };
}

/** Figure 5: dead neurons per layer and precision, from dead.parquet. */
export function deadFigure(runs: RunData[]): Figure | null {
  return layerFigure(runs, 'fig5-dead', 'Figure 5. Dead neurons per layer and precision',
    'Number of MLP neurons whose every activation stayed inside the near-zero band (dead.lo, dead.hi), per captured layer; hover a bar for dead / total.',
    'dead neurons', (run) => (run.dead ?? []).map((d) => ({
      precision: d.precision, layer: d.layer, value: d.dead_count, label: formatMetric('dead_count', d.dead_count),
      tooltip: `${run.name} · ${d.precision} · layer ${d.layer}: ${formatMetric('dead_count', d.dead_count)} / ${formatMetric('total', d.total)} dead`,
      data: { 'data-metric': 'layer_dead_count', 'data-precision': d.precision, 'data-layer': d.layer, 'data-value': dataValue(d.dead_count), 'data-total': d.total },
    })));
}

/** Figure 6: salient neurons (union over attributed examples) per layer and precision. */
export function salientFigure(runs: RunData[]): Figure | null {
  return layerFigure(runs, 'fig6-salient', 'Figure 6. Salient neurons per layer and precision (union over examples)',
    'Number of MLP neurons salient (normalised |attribution| ≥ the threshold) for at least one attributed example, per captured layer. ' +
    '⚠k/n beside a count: k of the n attributed examples did not reach LIG completeness (error > 5%), so the count may be affected; see Figure 7.',
    'salient neurons', (run) => salientCounts(run).map((c) => {
      const flag = unconvergedFlag(c);
      return {
        precision: c.precision, layer: c.layer, value: c.value, label: `${formatMetric('union_count', c.value)}${flag ? ` ${flag}` : ''}`,
        tooltip: `${run.name} · ${c.precision} · layer ${c.layer}: ${formatMetric('union_count', c.value)} salient neurons${c.examples !== undefined ? ` over ${c.examples} examples` : ''}${flag ? `; ${c.completeness!.unconverged} unconverged` : ''}`,
        data: { 'data-metric': 'layer_union_count', 'data-precision': c.precision, 'data-layer': c.layer, 'data-value': dataValue(c.value), 'data-source': c.source, 'data-unconverged': c.completeness?.unconverged, 'data-examples': c.completeness?.count ?? c.examples },
      };
    }));
}
