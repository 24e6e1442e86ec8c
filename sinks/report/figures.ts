/**
 * The paper's Figures 1–4 built from loaded runs. Each builder returns null when no run has the
 * data for it, so the report never shows an empty panel. Panels are one per dataset (figures 1–3)
 * or one per run (reliability, correlation); within a panel, groups are models and bars are
 * precisions, coloured the same way in every figure.
 */
import type { RunData, CalibrationRow } from './load-run.ts';
import { num, precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatCompact, formatMetric } from './format.ts';
import { barPanel, coloursFor, figure, reliabilityPanel, type BarDatum, type LegendItem, type Panel, type ReliabilityBin } from './svg.ts';
import { allPrecisions, precisionLegend, widthFor, type Figure } from './figure-common.ts';
import { CORRELATION_BIN_FLOOR } from './correlation-data.ts';

export type { Figure } from './figure-common.ts';
export { allPrecisions } from './figure-common.ts';

export type PrecisionMetricName = 'accuracy' | 'mean_confidence' | 'ace';

export interface PrecisionMetric { value: number; lo?: number; hi?: number; source: 'summary' | 'predictions' | 'calibration' }

/**
 * A per-precision headline number: from summary.json when present, otherwise recomputed from the
 * Parquet rows (so a run with only predictions still gets Figures 1 and 2).
 */
export function precisionMetric(run: RunData, precision: string, metric: PrecisionMetricName): PrecisionMetric | undefined {
  const s = run.summary?.precisions?.[precision];
  const fromSummary = num(s?.[metric]);
  if (fromSummary !== undefined) {
    const ci = metric === 'accuracy' ? s?.accuracy_ci : metric === 'ace' ? s?.ace_ci : undefined;
    const lo = Array.isArray(ci) ? num(ci[0]) : undefined;
    const hi = Array.isArray(ci) ? num(ci[1]) : undefined;
    return { value: fromSummary, lo: lo !== undefined && hi !== undefined ? lo : undefined, hi: lo !== undefined && hi !== undefined ? hi : undefined, source: 'summary' };
  }
  if (metric === 'ace') {
    // ACE = mean over non-empty equal-mass bins of |accuracy − confidence| (Nixon et al. 2019).
    const bins = (run.calibration ?? []).filter((b) => b.precision === precision && b.scheme === 'equal-mass' && b.count > 0);
    if (!bins.length) return undefined;
    return { value: bins.reduce((a, b) => a + Math.abs(b.accuracy - b.mean_confidence), 0) / bins.length, source: 'calibration' };
  }
  const preds = run.predictions;
  const rows = preds?.rowsOf(precision) ?? [];
  if (!rows.length) return undefined;
  const value = metric === 'accuracy'
    ? rows.reduce((a, i) => a + preds!.correct![i], 0) / rows.length
    : rows.reduce((a, i) => a + preds!.confidence![i], 0) / rows.length;
  return { value, source: 'predictions' };
}

/** Datasets in first-seen order, each with its runs; group labels are model names made unique. */
function byDataset(runs: RunData[]): { dataset: string; runs: { run: RunData; label: string }[] }[] {
  const out: { dataset: string; runs: { run: RunData; label: string }[] }[] = [];
  for (const run of runs) {
    let entry = out.find((d) => d.dataset === run.dataset);
    if (!entry) out.push((entry = { dataset: run.dataset, runs: [] }));
    const clash = entry.runs.some((x) => x.run.model === run.model);
    entry.runs.push({ run, label: clash ? `${run.model} (${run.name})` : run.model });
  }
  return out;
}

const METRIC_TEXT: Record<PrecisionMetricName, { id: string; title: string; axis: string; caption: string }> = {
  accuracy: { id: 'fig1-accuracy', title: 'Figure 1. Accuracy per precision', axis: 'accuracy', caption: 'Accuracy of the predicted label token per precision; whiskers show the bootstrap confidence interval when the run recorded one.' },
  mean_confidence: { id: 'fig2-confidence', title: 'Figure 2. Average confidence per precision', axis: 'mean confidence', caption: 'Mean probability the model gave to its predicted token, per precision.' },
  ace: { id: 'fig3-ace', title: 'Figure 3a. Adaptive calibration error (ACE) per precision — lower is better', axis: 'ACE', caption: 'Adaptive calibration error (equal-mass bins) per precision; lower is better. Whiskers show the confidence interval when recorded.' },
};

/** Figures 1, 2 and 3a: one panel per dataset, models as groups, precisions as bars. */
export function precisionMetricFigure(runs: RunData[], metric: PrecisionMetricName): Figure | null {
  const precisions = allPrecisions(runs);
  const colours = coloursFor(precisions);
  const panels: Panel[] = [];
  const sources = new Set<string>();
  const datasets = byDataset(runs);
  const width = widthFor(datasets.length, 4);
  for (const d of datasets) {
    const bars: BarDatum[] = [];
    for (const { run, label } of d.runs) {
      for (const p of precisionsOf(run)) {
        const m = precisionMetric(run, p, metric);
        if (!m) continue;
        sources.add(m.source);
        const ci = m.lo !== undefined && m.hi !== undefined ? ` [${formatMetric(metric, m.lo)}, ${formatMetric(metric, m.hi)}]` : '';
        bars.push({
          group: run.dir, series: p, value: m.value, lo: m.lo, hi: m.hi,
          label: formatMetric(metric, m.value),
          tooltip: `${label} · ${d.dataset} · ${p}: ${metric} ${formatMetric(metric, m.value)}${ci}`,
          data: { 'data-metric': metric, 'data-precision': p, 'data-value': dataValue(m.value), 'data-run': run.name, 'data-model': run.model, 'data-dataset': d.dataset, 'data-source': m.source, 'data-lo': m.lo === undefined ? undefined : dataValue(m.lo), 'data-hi': m.hi === undefined ? undefined : dataValue(m.hi) },
        });
      }
    }
    if (!bars.length) continue;
    const groups = d.runs.filter(({ run }) => bars.some((b) => b.group === run.dir)).map(({ run, label }) => ({ key: run.dir, label }));
    panels.push(barPanel({ title: d.dataset, yLabel: METRIC_TEXT[metric].axis, groups, series: precisions, colours, bars, yMax: metric === 'ace' ? undefined : 1, width }));
  }
  if (!panels.length) return null;
  const t = METRIC_TEXT[metric];
  const used = precisions.filter((p) => runs.some((run) => precisionMetric(run, p, metric)));
  const note = sources.has('predictions') || sources.has('calibration')
    ? ' Values missing from summary.json were recomputed from ' + [...sources].filter((s) => s !== 'summary').map((s) => `${s}.parquet`).join(' and ') + '.'
    : '';
  return { id: t.id, title: t.title, caption: escapeText(t.caption + note), svg: figure({ id: t.id, title: t.title, legend: precisionLegend(used, colours), panels }) };
}

/** Equal-width bins when the run wrote them (the classic reliability diagram), else equal-mass. */
function reliabilityBins(rows: CalibrationRow[], precision: string): { scheme: string; bins: CalibrationRow[] } | null {
  for (const scheme of ['equal-width', 'equal-mass']) {
    const bins = rows.filter((b) => b.precision === precision && b.scheme === scheme && b.count > 0 && Number.isFinite(b.accuracy));
    if (bins.length) return { scheme, bins: bins.sort((a, b) => a.bin - b.bin) };
  }
  return null;
}

/** Figure 3b: a reliability diagram per run and precision. */
export function reliabilityFigure(runs: RunData[]): Figure | null {
  const precisions = allPrecisions(runs);
  const colours = coloursFor(precisions);
  const panels: Panel[] = [];
  const used: string[] = [];
  const perRow = Math.max(1, ...runs.map((run) => precisionsOf(run).length));
  const width = widthFor(perRow, 4, 3);
  for (const run of runs) {
    if (!run.calibration?.length) continue;
    let firstOfRun = true;
    for (const p of precisionsOf(run)) {
      const rb = reliabilityBins(run.calibration, p);
      if (!rb) continue;
      if (!used.includes(p)) used.push(p);
      const bins: ReliabilityBin[] = rb.bins.map((b) => ({
        lo: b.lo, hi: b.hi, accuracy: b.accuracy, confidence: b.mean_confidence, count: b.count,
        data: { 'data-metric': 'bin_accuracy', 'data-precision': p, 'data-value': dataValue(b.accuracy), 'data-run': run.name, 'data-scheme': rb.scheme, 'data-bin': b.bin, 'data-count': b.count, 'data-confidence': dataValue(b.mean_confidence) },
      }));
      const ace = precisionMetric(run, p, 'ace');
      const panel = reliabilityPanel({ title: p, subtitle: runs.length > 1 ? run.name : undefined, colour: colours.get(p) ?? '#888', bins, width, note: `${rb.scheme} bins${ace ? ` · ACE ${formatMetric('ace', ace.value)}` : ''}` });
      // One row per run, so precisions line up in columns across runs.
      panels.push({ ...panel, newRow: firstOfRun });
      firstOfRun = false;
    }
  }
  if (!panels.length) return null;
  const id = 'fig3-reliability';
  const title = 'Figure 3b. Reliability diagrams per precision';
  const legendItems: LegendItem[] = [...precisionLegend(precisions.filter((p) => used.includes(p)), colours), { label: 'mean confidence in bin', dashed: '#222' }, { label: 'perfect calibration', dashed: '#555' }];
  return { id, title, caption: escapeText('Bars: accuracy of the examples in each confidence bin; dashed bar-wide line: their mean confidence; diagonal: perfect calibration. A bar below its dashed line means over-confidence.'), svg: figure({ id, title, legend: legendItems, panels }) };
}

const BIN_FLOOR = CORRELATION_BIN_FLOOR;

function binKey(lo: number, hi: number): string {
  return `${lo.toFixed(6)}|${hi.toFixed(6)}`;
}

function binLabel(v: number): string {
  return String(Number(v.toFixed(3)));
}

/** Pairs per (precision, |r| bin) summed over layers, for bins from 0.3 up; plus undefined pairs. */
export function correlationCounts(run: RunData): { bins: { key: string; lo: number; hi: number }[]; pairs: Map<string, number>; undefinedPairs: Map<string, number> } {
  const bins: { key: string; lo: number; hi: number }[] = [];
  const pairs = new Map<string, number>();
  const undefinedPairs = new Map<string, number>();
  for (const row of run.correlation ?? []) {
    if (row.bin_lo === null || row.bin_lo === undefined) {
      undefinedPairs.set(row.precision, (undefinedPairs.get(row.precision) ?? 0) + row.pairs);
      continue;
    }
    if (row.bin_lo < BIN_FLOOR - 1e-9) continue;
    const hi = row.bin_hi ?? 1;
    const key = binKey(row.bin_lo, hi);
    if (!bins.some((b) => b.key === key)) bins.push({ key, lo: row.bin_lo, hi });
    const k = `${row.precision}\u0000${key}`;
    pairs.set(k, (pairs.get(k) ?? 0) + row.pairs);
  }
  bins.sort((a, b) => a.lo - b.lo);
  return { bins, pairs, undefinedPairs };
}

/** Figure 4: neuron-pair |correlation| histogram, one panel per run, log-scaled counts. */
export function correlationFigure(runs: RunData[]): Figure | null {
  const precisions = allPrecisions(runs);
  const colours = coloursFor(precisions);
  const panels: Panel[] = [];
  const used: string[] = [];
  const notes: string[] = [];
  const width = widthFor(runs.length, 2);
  for (const run of runs) {
    const c = correlationCounts(run);
    const bars: BarDatum[] = [];
    for (const p of precisionsOf(run)) {
      for (const b of c.bins) {
        const v = c.pairs.get(`${p}\u0000${b.key}`);
        if (v === undefined) continue;
        if (!used.includes(p)) used.push(p);
        bars.push({
          group: b.key, series: p, value: v, label: formatCompact(v),
          tooltip: `${run.name} · ${p}: ${formatMetric('pairs', v)} pairs with |r| in [${binLabel(b.lo)}, ${binLabel(b.hi)})`,
          data: { 'data-metric': 'pairs', 'data-precision': p, 'data-value': dataValue(v), 'data-run': run.name, 'data-bin-lo': dataValue(b.lo), 'data-bin-hi': dataValue(b.hi) },
        });
      }
    }
    for (const [p, v] of c.undefinedPairs) {
      notes.push(`<span class="undefined-pairs" data-metric="undefined_pairs" data-run="${escapeText(run.name)}" data-precision="${escapeText(p)}" data-value="${dataValue(v)}">${escapeText(runs.length > 1 ? `${run.name} · ${p}` : p)}: ${formatMetric('undefined_pairs', v)}</span>`);
    }
    if (!bars.length) continue;
    const groups = c.bins.map((b) => ({ key: b.key, label: `${binLabel(b.lo)}–${binLabel(b.hi)}` }));
    panels.push(barPanel({ title: `${run.model} · ${run.dataset}`, yLabel: 'neuron pairs (log scale)', xLabel: '|correlation| bin', groups, series: precisions, colours, bars, log: true, width }));
  }
  if (!panels.length) return null;
  const id = 'fig4-correlation';
  const title = 'Figure 4. Neuron-pair |correlation| histogram per precision (|r| ≥ 0.3)';
  let caption = escapeText('Number of MLP neuron pairs whose absolute Pearson correlation falls in each bin, summed over the captured layers; labels in compact form (K = thousand, M = million).');
  if (notes.length) caption += ` Pairs left undefined because a neuron had zero variance: ${notes.join('; ')}.`;
  return { id, title, caption, svg: figure({ id, title, legend: precisionLegend(precisions.filter((p) => used.includes(p)), colours), panels }) };
}
