/**
 * Figure 4b: the |r| histogram of Figure 4 per captured layer, as small multiples (one row per
 * run, one panel per layer, the same zero-safe log axis), so a layer whose neurons become
 * redundant under quantization is not hidden in the sum over layers.
 */
import type { RunData } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatCompact, formatMetric } from './format.ts';
import { barPanel, coloursFor, figure, type BarDatum, type Panel } from './svg.ts';
import { allPrecisions, precisionLegend, widthFor, type Figure } from './figure-common.ts';
import { CORRELATION_BIN_FLOOR } from './correlation-data.ts';

function binLabel(v: number): string {
  return String(Number(v.toFixed(3)));
}

function layerPanels(run: RunData, runs: RunData[], width: number, used: Set<string>): Panel[] {
  const precisions = allPrecisions(runs);
  const colours = coloursFor(precisions);
  const rows = (run.correlation ?? []).filter((r) => r.bin_lo !== null && r.bin_lo !== undefined && r.bin_lo >= CORRELATION_BIN_FLOOR - 1e-9);
  const layers = [...new Set(rows.map((r) => r.layer))].sort((a, b) => a - b);
  const order = precisionsOf(run);
  return layers.map((layer, i) => {
    const mine = rows.filter((r) => r.layer === layer).sort((a, b) => a.bin_lo! - b.bin_lo! || order.indexOf(a.precision) - order.indexOf(b.precision));
    const bins = [...new Map(mine.map((r) => [dataValue(r.bin_lo!), { key: dataValue(r.bin_lo!), lo: r.bin_lo!, hi: r.bin_hi ?? 1 }])).values()];
    const bars: BarDatum[] = mine.map((r) => {
      used.add(r.precision);
      return {
        group: dataValue(r.bin_lo!), series: r.precision, value: r.pairs, label: formatCompact(r.pairs),
        tooltip: `${run.name} · layer ${layer} · ${r.precision}: ${formatMetric('pairs', r.pairs)} pairs with |r| in [${binLabel(r.bin_lo!)}, ${binLabel(r.bin_hi ?? 1)})`,
        data: { 'data-metric': 'layer_pairs', 'data-run': run.name, 'data-layer': layer, 'data-precision': r.precision, 'data-value': dataValue(r.pairs), 'data-bin-lo': dataValue(r.bin_lo!), 'data-bin-hi': dataValue(r.bin_hi ?? 1) },
      };
    });
    const groups = bins.map((b) => ({ key: b.key, label: `${binLabel(b.lo)}–${binLabel(b.hi)}` }));
    const title = runs.length > 1 ? `${run.name} · layer ${layer}` : `layer ${layer}`;
    return { ...barPanel({ title, yLabel: 'neuron pairs (log scale)', xLabel: '|r| bin', groups, series: precisions, colours, bars, log: true, width }), newRow: i === 0 };
  });
}

export function correlationLayersFigure(runs: RunData[]): Figure | null {
  const maxLayers = Math.max(0, ...runs.map((run) => new Set((run.correlation ?? []).map((r) => r.layer)).size));
  if (!maxLayers) return null;
  const width = widthFor(maxLayers, 3, 3);
  const used = new Set<string>();
  const panels = runs.flatMap((run) => layerPanels(run, runs, width, used));
  if (!panels.length) return null;
  const id = 'fig4b-correlation-layers';
  const title = 'Figure 4b. |correlation| histogram per layer (|r| ≥ 0.3)';
  const caption = 'The pairs of Figure 4, one panel per captured layer. Bar heights use log10(1 + pairs), so an empty bin (0) has no bar and a bin with one pair has a visible one.';
  return { id, title, caption: escapeText(caption), svg: figure({ id, title, legend: precisionLegend(allPrecisions(runs).filter((p) => used.has(p)), coloursFor(allPrecisions(runs))), panels }) };
}
