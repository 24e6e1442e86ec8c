/**
 * The report's tables as HTML strings: run metadata, per-precision results, dead neurons,
 * salient neurons, cross-precision agreement and per-layer activation statistics. Each returns ''
 * when its data is missing. Numeric cells carry data-metric / data-precision / data-value so a
 * test can compare them with the files exactly.
 */
import type { RunData } from './load-run.ts';
import { num, precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatMetric } from './format.ts';
import { attrs, type Attrs } from './svg.ts';
import { precisionMetric } from './figures.ts';

export interface Table { id: string; title: string; html: string }

function cell(metric: string, value: number | undefined, extra: Attrs = {}, shown?: string): string {
  if (value === undefined) return '<td class="missing">–</td>';
  return `<td class="num"${attrs({ 'data-metric': metric, 'data-value': dataValue(value), ...extra })}>${escapeText(shown ?? formatMetric(metric, value))}</td>`;
}

function table(head: string[], rows: string[], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${escapeText(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** Settings objects shown as "key=value, key=value" (nested values as JSON). */
function settingsText(o: unknown): string {
  if (o === null || o === undefined) return '';
  if (typeof o !== 'object') return String(o);
  return Object.entries(o as Record<string, unknown>)
    .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(', ');
}

function layersOf<T extends { layer: number | null }>(rows: T[]): number[] {
  return [...new Set(rows.map((r) => r.layer).filter((l): l is number => typeof l === 'number'))].sort((a, b) => a - b);
}

export function metadataTable(run: RunData): string {
  const s = run.summary;
  if (!s) return '';
  const rows: string[] = [];
  const text = (k: string, v: unknown, field: string) => {
    if (v === undefined || v === null || v === '') return;
    rows.push(`<tr><th scope="row">${escapeText(k)}</th><td data-field="${escapeText(field)}">${escapeText(v)}</td></tr>`);
  };
  const number = (k: string, v: unknown, metric: string, field: string) => {
    const n = num(v);
    if (n === undefined) return;
    rows.push(`<tr><th scope="row">${escapeText(k)}</th>${cell(metric, n, { 'data-field': field })}</tr>`);
  };
  text('Run', s.name, 'name');
  text('Model', s.model?.path, 'model.path');
  text('Model hash', s.model?.hash, 'model.hash');
  if (s.model?.demo === true) text('Model kind', s.model.label || 'demo model, random weights', 'model.label');
  else text('Model kind', s.model?.label, 'model.label');
  text('Dataset', s.dataset?.path, 'dataset.path');
  number('Examples', s.dataset?.examples, 'examples', 'dataset.examples');
  text('Reference precision', s.reference, 'reference');
  for (const [p, ps] of Object.entries(s.precisions ?? {})) {
    const q = settingsText(ps?.quantization);
    text(`Precision ${p}`, q || '(no quantization settings recorded)', `precisions.${p}.quantization`);
    // The census of linear layers (onnx/quantize/census.ts): never a silently partial precision.
    const rec = (ps?.quantization as { record?: { decoder_fraction_quantized?: number; fraction_quantized?: number; kept_float?: unknown[] } } | undefined)?.record;
    if (typeof rec?.decoder_fraction_quantized === 'number')
      text(
        `Precision ${p}: linear weights quantized`,
        `${(100 * rec.decoder_fraction_quantized).toFixed(1)}% of decoder linear-weight parameters, ${(100 * (rec.fraction_quantized ?? 0)).toFixed(1)}% of all; ${rec.kept_float?.length ?? 0} weights kept in float`,
        `precisions.${p}.quantization.record`,
      );
  }
  text('ONNX Runtime version', s.ort?.version, 'ort.version');
  const ortSettings = settingsText(s.ort?.settings);
  text('ONNX Runtime settings', ortSettings, 'ort.settings');
  number('Truncated examples', s.truncated, 'truncated', 'truncated');
  number('Wall time (s)', s.wall_seconds, 'wall_seconds', 'wall_seconds');
  number('Tokens per second', s.tokens_per_second, 'tokens_per_second', 'tokens_per_second');
  if (Array.isArray(s.layers) && s.layers.length) {
    text('Captured layers', s.layers.map((l) => `${l.layer}${l.tensor ? ` (${l.tensor}` : ''}${l.width !== undefined ? `${l.tensor ? ', ' : ' ('}width ${l.width}` : ''}${l.tensor || l.width !== undefined ? ')' : ''}`).join('; '), 'layers');
  }
  if (!rows.length) return '';
  return `<table class="meta">${rows.join('')}</table>`;
}

const PRECISION_COLUMNS: { key: 'examples' | 'tokens' | 'accuracy' | 'mean_confidence' | 'ace' | 'ece' | 'mce'; head: string }[] = [
  { key: 'examples', head: 'examples' }, { key: 'tokens', head: 'tokens' }, { key: 'accuracy', head: 'accuracy' },
  { key: 'mean_confidence', head: 'mean confidence' }, { key: 'ace', head: 'ACE' }, { key: 'ece', head: 'ECE' }, { key: 'mce', head: 'MCE' },
];

/** Headline numbers per precision (the values behind Figures 1–3, with their intervals). */
export function precisionTable(run: RunData): string {
  const precisions = precisionsOf(run);
  const value = (p: string, key: (typeof PRECISION_COLUMNS)[number]['key']) => {
    if (key === 'accuracy' || key === 'mean_confidence' || key === 'ace') return precisionMetric(run, p, key)?.value;
    if (key === 'examples' && run.summary?.precisions?.[p]?.examples === undefined && run.predictions) {
      const n = run.predictions.filter((r) => r.precision === p).length;
      return n || undefined;
    }
    return num(run.summary?.precisions?.[p]?.[key]);
  };
  const cols = PRECISION_COLUMNS.filter((c) => precisions.some((p) => value(p, c.key) !== undefined));
  const rowsP = precisions.filter((p) => cols.some((c) => value(p, c.key) !== undefined));
  if (!cols.length || !rowsP.length) return '';
  const rows = rowsP.map((p) => {
    const s = run.summary?.precisions?.[p];
    const cells = cols.map((c) => {
      const v = value(p, c.key);
      const ci = c.key === 'accuracy' ? s?.accuracy_ci : c.key === 'ace' ? s?.ace_ci : undefined;
      if (v !== undefined && Array.isArray(ci) && num(ci[0]) !== undefined && num(ci[1]) !== undefined && num(s?.[c.key]) !== undefined) {
        const shown = `${formatMetric(c.key, v)} [${formatMetric(c.key, ci[0])}, ${formatMetric(c.key, ci[1])}]`;
        return cell(c.key, v, { 'data-precision': p, 'data-lo': dataValue(ci[0]), 'data-hi': dataValue(ci[1]) }, shown);
      }
      return cell(c.key, v, { 'data-precision': p });
    });
    return `<tr><th scope="row">${escapeText(p)}</th>${cells.join('')}</tr>`;
  });
  return table(['precision', ...cols.map((c) => (c.key === 'accuracy' || c.key === 'ace') ? `${c.head} [CI]` : c.head)], rows);
}

/** Dead neurons per layer (rows) and precision (columns), as "dead / total". */
export function deadTable(run: RunData): string {
  const rowsIn = run.dead ?? [];
  if (!rowsIn.length) return '';
  const precisions = precisionsOf(run).filter((p) => rowsIn.some((r) => r.precision === p));
  const rows = layersOf(rowsIn).map((layer) => {
    const cells = precisions.map((p) => {
      const r = rowsIn.find((x) => x.layer === layer && x.precision === p);
      if (!r) return cell('dead_count', undefined);
      const ids = Array.isArray(r.dead_ids) && r.dead_ids.length ? { title: `dead neuron ids: ${r.dead_ids.slice(0, 50).join(', ')}${r.dead_ids.length > 50 ? ', …' : ''}` } : {};
      return cell('dead_count', r.dead_count, { 'data-precision': p, 'data-layer': layer, 'data-total': r.total, ...ids }, `${formatMetric('dead_count', r.dead_count)} / ${formatMetric('total', r.total)}`);
    });
    return `<tr><th scope="row">${layer}</th>${cells.join('')}</tr>`;
  });
  return table(['layer', ...precisions], rows);
}

/**
 * Salient neurons per layer and precision: the union over examples, from summary.salience, or —
 * when the summary lacks it — the number of neurons in salience.parquet salient for ≥ 1 example.
 */
export function salientTable(run: RunData): string {
  const counts = new Map<string, { value: number; source: string }>();
  const layers = new Set<number>();
  const fromSummary = run.summary?.salience;
  if (fromSummary && typeof fromSummary === 'object') {
    for (const [p, byLayer] of Object.entries(fromSummary)) {
      for (const [layer, v] of Object.entries(byLayer ?? {})) {
        const n = num(v?.union_count);
        if (n === undefined || !Number.isFinite(Number(layer))) continue;
        counts.set(`${p}\u0000${Number(layer)}`, { value: n, source: 'summary' });
        layers.add(Number(layer));
      }
    }
  }
  if (!counts.size && run.salience?.length) {
    for (const r of run.salience) {
      const k = `${r.precision}\u0000${r.layer}`;
      const prev = counts.get(k)?.value ?? 0;
      counts.set(k, { value: prev + (r.salient_examples > 0 ? 1 : 0), source: 'salience.parquet' });
      layers.add(r.layer);
    }
  }
  if (!counts.size) return '';
  const precisions = precisionsOf(run).filter((p) => [...layers].some((l) => counts.has(`${p}\u0000${l}`)));
  for (const p of Object.keys(fromSummary ?? {})) if (!precisions.includes(p) && [...layers].some((l) => counts.has(`${p}\u0000${l}`))) precisions.push(p);
  const rows = [...layers].sort((a, b) => a - b).map((layer) => {
    const cells = precisions.map((p) => {
      const c = counts.get(`${p}\u0000${layer}`);
      return cell('union_count', c?.value, { 'data-precision': p, 'data-layer': layer, 'data-source': c?.source });
    });
    return `<tr><th scope="row">${layer}</th>${cells.join('')}</tr>`;
  });
  return table(['layer', ...precisions], rows);
}

const OUTPUT_METRIC_ORDER = ['kl_mean', 'kl_median', 'kl_p90', 'kl_p99', 'kl_max', 'top1_agreement', 'delta_p_mean', 'flips_correct_to_wrong', 'flips_wrong_to_correct'];
const LAYER_METRIC_ORDER = ['sqnr_db', 'cosine_mean', 'dead_jaccard', 'salient_jaccard'];

/** Column headings for agreement metrics; unknown metrics keep their own name. */
const METRIC_HEADINGS: Record<string, string> = {
  kl_mean: 'KL mean', kl_median: 'KL median', kl_p90: 'KL p90', kl_p99: 'KL p99', kl_max: 'KL max',
  top1_agreement: 'same top-1', delta_p_mean: 'mean Δp', flips_correct_to_wrong: 'flips right→wrong',
  flips_wrong_to_correct: 'flips wrong→right', sqnr_db: 'SQNR (dB)', cosine_mean: 'mean cosine',
  dead_jaccard: 'dead-set Jaccard', salient_jaccard: 'salient-set Jaccard',
};

function heading(metric: string): string {
  return METRIC_HEADINGS[metric] ?? metric;
}

function orderMetrics(present: string[], preferred: string[]): string[] {
  return [...preferred.filter((m) => present.includes(m)), ...present.filter((m) => !preferred.includes(m)).sort()];
}

/** Output-level agreement (layer null): one row per precision compared with its reference. */
export function agreementOutputTable(run: RunData): string {
  const rowsIn = (run.agreement ?? []).filter((r) => r.layer === null || r.layer === undefined);
  if (!rowsIn.length) return '';
  const metrics = orderMetrics([...new Set(rowsIn.map((r) => r.metric))], OUTPUT_METRIC_ORDER);
  const pairs = [...new Map(rowsIn.map((r) => [`${r.precision}\u0000${r.reference}`, r])).values()];
  const precisionOrder = precisionsOf(run);
  pairs.sort((a, b) => precisionOrder.indexOf(a.precision) - precisionOrder.indexOf(b.precision));
  const rows = pairs.map((pair) => {
    const cells = metrics.map((m) => {
      const r = rowsIn.find((x) => x.precision === pair.precision && x.reference === pair.reference && x.metric === m);
      return cell(m, r?.value, { 'data-precision': pair.precision, 'data-reference': pair.reference, 'data-layer': 'output' });
    });
    return `<tr><th scope="row" class="nowrap">${escapeText(pair.precision)} vs ${escapeText(pair.reference)}</th>${cells.join('')}</tr>`;
  });
  return table(['precision', ...metrics.map(heading)], rows);
}

/** Per-layer agreement (SQNR, cosine, Jaccard of dead/salient sets): one row per layer and precision. */
export function agreementLayerTable(run: RunData): string {
  const rowsIn = (run.agreement ?? []).filter((r) => typeof r.layer === 'number');
  if (!rowsIn.length) return '';
  const metrics = orderMetrics([...new Set(rowsIn.map((r) => r.metric))], LAYER_METRIC_ORDER);
  const precisionOrder = precisionsOf(run);
  const keys = [...new Map(rowsIn.map((r) => [`${r.layer}\u0000${r.precision}\u0000${r.reference}`, r])).values()]
    .sort((a, b) => (a.layer as number) - (b.layer as number) || precisionOrder.indexOf(a.precision) - precisionOrder.indexOf(b.precision));
  const rows = keys.map((k) => {
    const cells = metrics.map((m) => {
      const r = rowsIn.find((x) => x.layer === k.layer && x.precision === k.precision && x.reference === k.reference && x.metric === m);
      return cell(m, r?.value, { 'data-precision': k.precision, 'data-reference': k.reference, 'data-layer': k.layer as number });
    });
    return `<tr><th scope="row">${k.layer}</th><td class="nowrap">${escapeText(k.precision)} vs ${escapeText(k.reference)}</td>${cells.join('')}</tr>`;
  });
  return table(['layer', 'precision', ...metrics.map(heading)], rows);
}

/** Per layer, tensor and precision: neuron count and the neuron-averaged mean, variance and near-zero fraction. */
export function neuronTable(run: RunData): string {
  const rowsIn = run.neurons ?? [];
  if (!rowsIn.length) return '';
  const groups = new Map<string, { layer: number; tensor: string; precision: string; n: number; mean: number; variance: number; nearZero: number }>();
  for (const r of rowsIn) {
    const k = `${r.layer}\u0000${r.tensor}\u0000${r.precision}`;
    const g = groups.get(k) ?? { layer: r.layer, tensor: r.tensor, precision: r.precision, n: 0, mean: 0, variance: 0, nearZero: 0 };
    g.n += 1; g.mean += r.mean; g.variance += r.variance; g.nearZero += r.near_zero_fraction;
    groups.set(k, g);
  }
  const order = precisionsOf(run);
  const sorted = [...groups.values()].sort((a, b) => a.layer - b.layer || a.tensor.localeCompare(b.tensor) || order.indexOf(a.precision) - order.indexOf(b.precision));
  const rows = sorted.map((g) => {
    const extra = { 'data-precision': g.precision, 'data-layer': g.layer, 'data-tensor': g.tensor };
    return `<tr><th scope="row">${g.layer}</th><td>${escapeText(g.tensor)}</td><td>${escapeText(g.precision)}</td>` +
      cell('neurons', g.n, extra) + cell('mean_activation', g.mean / g.n, extra) + cell('mean_variance', g.variance / g.n, extra) + cell('near_zero_fraction', g.nearZero / g.n, extra) + '</tr>';
  });
  return table(['layer', 'tensor', 'precision', 'neurons', 'mean activation', 'mean variance', 'mean near-zero fraction'], rows);
}

/** All tables for one run, in reading order, skipping the empty ones. */
export function buildTables(run: RunData): Table[] {
  const all: Table[] = [
    { id: 'metadata', title: 'Run metadata', html: metadataTable(run) },
    { id: 'precisions', title: 'Results per precision', html: precisionTable(run) },
    { id: 'agreement-output', title: 'Cross-precision agreement (output level)', html: agreementOutputTable(run) },
    { id: 'agreement-layers', title: 'Cross-precision agreement per layer', html: agreementLayerTable(run) },
    { id: 'dead', title: 'Dead neurons per layer (dead / total)', html: deadTable(run) },
    { id: 'salient', title: 'Salient neurons per layer (union over examples)', html: salientTable(run) },
    { id: 'neurons', title: 'Activation statistics per layer', html: neuronTable(run) },
  ];
  return all.filter((t) => t.html !== '');
}
