/**
 * The report's tables as HTML strings: run metadata, per-precision results, dead neurons,
 * salient neurons, cross-precision agreement and per-layer activation statistics. Each returns ''
 * when its data is missing. Numeric cells carry data-metric / data-precision / data-value so a
 * test can compare them with the files exactly.
 */
import type { RunData } from './load-run.ts';
import { num, precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatDelta, formatMetric } from './format.ts';
import { attrs, type Attrs } from './svg.ts';
import { precisionMetric } from './figures.ts';
import type { Csv } from './csv.ts';
import { salientCounts, unconvergedFlag } from './salience-data.ts';

export interface Table { id: string; title: string; html: string; csv?: Csv; note?: string }

/** A table's HTML and the long-form CSV of the same numbers. */
export interface Built { html: string; csv: Csv }

const EMPTY: Built = { html: '', csv: { columns: [], rows: [] } };

/** Δ vs the reference: carried as data-delta (not data-metric) so value cells stay one per number. */
function deltaCell(metric: string, d: number | undefined, extra: Attrs): string {
  if (d === undefined) return '<td class="missing">–</td>';
  return `<td class="num delta"${attrs({ 'data-delta': metric, 'data-value': dataValue(d), ...extra })}>${escapeText(formatDelta(metric, d))}</td>`;
}

/** The run's reference precision: summary.reference, else its first precision. */
export function referenceOf(run: RunData): string | undefined {
  const ref = run.summary?.reference;
  return typeof ref === 'string' && ref ? ref : precisionsOf(run)[0];
}

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

/**
 * Run metadata. Wall time and throughput stay in summary.json and are not shown: they differ
 * between identical runs, and the report must be byte-identical for identical runs.
 */
export function metadataTable(run: RunData): Built {
  const s = run.summary;
  if (!s) return EMPTY;
  const rows: string[] = [];
  const csv: Csv = { columns: ['field', 'value'], rows: [] };
  const text = (k: string, v: unknown, field: string) => {
    if (v === undefined || v === null || v === '') return;
    rows.push(`<tr><th scope="row">${escapeText(k)}</th><td data-field="${escapeText(field)}">${escapeText(v)}</td></tr>`);
    csv.rows.push([field, String(v)]);
  };
  const number = (k: string, v: unknown, metric: string, field: string) => {
    const n = num(v);
    if (n === undefined) return;
    rows.push(`<tr><th scope="row">${escapeText(k)}</th>${cell(metric, n, { 'data-field': field })}</tr>`);
    csv.rows.push([field, n]);
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
  text('ONNX Runtime settings', settingsText(s.ort?.settings), 'ort.settings');
  number('Truncated examples', s.truncated, 'truncated', 'truncated');
  if (Array.isArray(s.layers) && s.layers.length) text('Captured layers', layersText(s.layers), 'layers');
  if (!rows.length) return EMPTY;
  return { html: `<table class="meta">${rows.join('')}</table>`, csv };
}

function layersText(layers: { layer: number; tensor?: string; width?: number }[]): string {
  return layers.map((l) => {
    const inner = [l.tensor, l.width !== undefined ? `width ${l.width}` : undefined].filter(Boolean).join(', ');
    return `${l.layer}${inner ? ` (${inner})` : ''}`;
  }).join('; ');
}

const PRECISION_COLUMNS: { key: 'examples' | 'tokens' | 'accuracy' | 'mean_confidence' | 'ace' | 'ece' | 'mce'; head: string }[] = [
  { key: 'examples', head: 'examples' }, { key: 'tokens', head: 'tokens' }, { key: 'accuracy', head: 'accuracy' },
  { key: 'mean_confidence', head: 'mean confidence' }, { key: 'ace', head: 'ACE' }, { key: 'ece', head: 'ECE' }, { key: 'mce', head: 'MCE' },
];
type PrecisionKey = (typeof PRECISION_COLUMNS)[number]['key'];
const DELTA_KEYS = ['accuracy', 'mean_confidence', 'ace'] as const;

function precisionValue(run: RunData, p: string, key: PrecisionKey): number | undefined {
  if (key === 'accuracy' || key === 'mean_confidence' || key === 'ace') return precisionMetric(run, p, key)?.value;
  if (key === 'examples' && run.summary?.precisions?.[p]?.examples === undefined && run.predictions) {
    const n = run.predictions.rowsOf(p).length;
    return n || undefined;
  }
  return num(run.summary?.precisions?.[p]?.[key]);
}

function precisionCell(run: RunData, p: string, key: PrecisionKey): string {
  const s = run.summary?.precisions?.[p];
  const v = precisionValue(run, p, key);
  const ci = key === 'accuracy' ? s?.accuracy_ci : key === 'ace' ? s?.ace_ci : undefined;
  if (v !== undefined && Array.isArray(ci) && num(ci[0]) !== undefined && num(ci[1]) !== undefined && num(s?.[key]) !== undefined) {
    const shown = `${formatMetric(key, v)} [${formatMetric(key, ci[0])}, ${formatMetric(key, ci[1])}]`;
    return cell(key, v, { 'data-precision': p, 'data-lo': dataValue(ci[0]), 'data-hi': dataValue(ci[1]) }, shown);
  }
  return cell(key, v, { 'data-precision': p });
}

/** Headline numbers per precision (the values behind Figures 1–3, with their intervals), and Δ vs the reference. */
export function precisionTable(run: RunData): Built {
  const precisions = precisionsOf(run);
  const ref = referenceOf(run);
  const cols = PRECISION_COLUMNS.filter((c) => precisions.some((p) => precisionValue(run, p, c.key) !== undefined));
  const rowsP = precisions.filter((p) => cols.some((c) => precisionValue(run, p, c.key) !== undefined));
  if (!cols.length || !rowsP.length) return EMPTY;
  const deltas = DELTA_KEYS.filter((k) => ref && rowsP.length > 1 && precisionValue(run, ref, k) !== undefined);
  const delta = (p: string, k: PrecisionKey) => {
    const v = precisionValue(run, p, k), r0 = ref === undefined ? undefined : precisionValue(run, ref, k);
    return p === ref || v === undefined || r0 === undefined ? undefined : v - r0;
  };
  const rows = rowsP.map((p) => {
    const cells = cols.map((c) => precisionCell(run, p, c.key));
    const dcells = deltas.map((k) => deltaCell(k, delta(p, k), { 'data-precision': p, 'data-reference': ref }));
    return `<tr><th scope="row">${escapeText(p)}</th>${cells.join('')}${dcells.join('')}</tr>`;
  });
  const head = ['precision', ...cols.map((c) => (c.key === 'accuracy' || c.key === 'ace') ? `${c.head} [CI]` : c.head), ...deltas.map((k) => `Δ ${PRECISION_COLUMNS.find((c) => c.key === k)!.head} vs ${ref}`)];
  const csvCols = ['precision', ...cols.map((c) => c.key), 'accuracy_ci_lo', 'accuracy_ci_hi', 'ace_ci_lo', 'ace_ci_hi', ...deltas.map((k) => `delta_${k}`)];
  const csvRows = rowsP.map((p) => {
    const s = run.summary?.precisions?.[p];
    return [p, ...cols.map((c) => precisionValue(run, p, c.key)), s?.accuracy_ci?.[0], s?.accuracy_ci?.[1], s?.ace_ci?.[0], s?.ace_ci?.[1], ...deltas.map((k) => delta(p, k))];
  });
  return { html: table(head, rows), csv: { columns: csvCols, rows: csvRows } };
}

/** Layer × precision counts with Δ columns vs the reference; `extra` adds cells beside a count (flags). */
function layerCountTable(run: RunData, metric: string, entries: { layer: number; precision: string; value: number; shown: string; attrs: Attrs; beside?: string }[], csvExtra: { columns: string[]; of: (e: (typeof entries)[number]) => unknown[] }): Built {
  if (!entries.length) return EMPTY;
  const precisions = precisionsOf(run).filter((p) => entries.some((e) => e.precision === p));
  for (const e of entries) if (!precisions.includes(e.precision)) precisions.push(e.precision);
  const ref = referenceOf(run);
  const others = ref && precisions.includes(ref) ? precisions.filter((p) => p !== ref) : [];
  const withBeside = entries.some((e) => e.beside !== undefined);
  const get = (layer: number, p: string) => entries.find((e) => e.layer === layer && e.precision === p);
  const layers = [...new Set(entries.map((e) => e.layer))].sort((a, b) => a - b);
  const csvRows: unknown[][] = [];
  const rows = layers.map((layer) => {
    const cells = precisions.map((p) => {
      const e = get(layer, p);
      const main = e ? cell(metric, e.value, { 'data-precision': p, 'data-layer': layer, ...e.attrs }, e.shown) : cell(metric, undefined);
      return withBeside ? main + `<td class="flag">${escapeText(e?.beside ?? '')}</td>` : main;
    });
    const deltas = others.map((p) => {
      const e = get(layer, p), r0 = get(layer, ref!);
      return deltaCell(metric, e && r0 ? e.value - r0.value : undefined, { 'data-precision': p, 'data-reference': ref, 'data-layer': layer });
    });
    for (const p of precisions) {
      const e = get(layer, p), r0 = ref ? get(layer, ref) : undefined;
      if (e) csvRows.push([layer, p, e.value, ...csvExtra.of(e), p !== ref && r0 ? e.value - r0.value : null]);
    }
    return `<tr><th scope="row">${layer}</th>${cells.join('')}${deltas.join('')}</tr>`;
  });
  const headCells = ['<th>layer</th>', ...precisions.map((p) => `<th${withBeside ? ' colspan="2"' : ''}>${escapeText(p)}</th>`), ...others.map((p) => `<th>Δ ${escapeText(p)} vs ${escapeText(ref!)}</th>`)];
  const html = `<table><thead><tr>${headCells.join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
  return { html, csv: { columns: ['layer', 'precision', metric, ...csvExtra.columns, 'delta_vs_reference'], rows: csvRows as Csv['rows'] } };
}

/** Dead neurons per layer (rows) and precision (columns), as "dead / total". */
export function deadTable(run: RunData): Built {
  const entries = (run.dead ?? []).map((r) => ({
    layer: r.layer, precision: r.precision, value: r.dead_count,
    shown: `${formatMetric('dead_count', r.dead_count)} / ${formatMetric('total', r.total)}`,
    attrs: { 'data-total': r.total, ...(Array.isArray(r.dead_ids) && r.dead_ids.length ? { title: `dead neuron ids: ${r.dead_ids.slice(0, 50).join(', ')}${r.dead_ids.length > 50 ? ', …' : ''}` } : {}) } as Attrs,
    total: r.total,
  }));
  return layerCountTable(run, 'dead_count', entries, { columns: ['total'], of: (e) => [(e as (typeof entries)[number]).total] });
}

/**
 * Salient neurons per layer and precision: the union over examples (summary.salience, else
 * counted from salience.parquet), with "⚠k/n" beside a count when k of its n attributed examples
 * did not reach completeness.
 */
export function salientTable(run: RunData): Built {
  const entries = salientCounts(run).map((c) => ({
    layer: c.layer, precision: c.precision, value: c.value, shown: formatMetric('union_count', c.value),
    attrs: { 'data-source': c.source, 'data-unconverged': c.completeness?.unconverged } as Attrs,
    beside: c.completeness ? unconvergedFlag(c) : undefined, c,
  }));
  return layerCountTable(run, 'union_count', entries, {
    columns: ['examples', 'unconverged'],
    of: (e) => { const c = (e as (typeof entries)[number]).c; return [c.completeness?.count ?? c.examples, c.completeness?.unconverged]; },
  });
}

const OUTPUT_METRIC_ORDER = ['examples', 'kl_mean', 'kl_median', 'kl_p90', 'kl_p99', 'kl_max', 'top1_agreement', 'delta_p_mean', 'flips_correct_to_wrong', 'flips_wrong_to_correct'];
const LAYER_METRIC_ORDER = ['sqnr_db', 'cosine_mean', 'dead_jaccard', 'salient_jaccard', 'values', 'cosine_undefined_rows'];

/** Column headings for agreement metrics; an unknown metric keeps its own name. KL is in nats (natural log). */
const METRIC_HEADINGS: Record<string, string> = {
  examples: 'examples', kl_mean: 'KL mean (nats)', kl_median: 'KL median (nats)', kl_p90: 'KL p90 (nats)', kl_p99: 'KL p99 (nats)', kl_max: 'KL max (nats)',
  top1_agreement: 'same top-1', delta_p_mean: 'mean Δp', flips_correct_to_wrong: 'flips right→wrong',
  flips_wrong_to_correct: 'flips wrong→right', sqnr_db: 'SQNR (dB)', cosine_mean: 'mean cosine',
  dead_jaccard: 'dead-set Jaccard', salient_jaccard: 'salient-set Jaccard', values: 'activation values compared',
  cosine_undefined_rows: 'rows without a cosine (zero norm)',
};

export function heading(metric: string): string {
  return METRIC_HEADINGS[metric] ?? metric.replace(/_/g, ' ');
}

function orderMetrics(present: string[], preferred: string[]): string[] {
  return [...preferred.filter((m) => present.includes(m)), ...present.filter((m) => !preferred.includes(m)).sort()];
}

/** Output-level agreement (layer null): one row per precision compared with its reference. */
export function agreementOutputTable(run: RunData): Built {
  const rowsIn = (run.agreement ?? []).filter((r) => r.layer === null || r.layer === undefined);
  if (!rowsIn.length) return EMPTY;
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
  const csv: Csv = { columns: ['precision', 'reference', 'metric', 'value'], rows: rowsIn.map((r) => [r.precision, r.reference, r.metric, r.value]) };
  return { html: table(['precision', ...metrics.map(heading)], rows), csv };
}

/** Per-layer agreement (SQNR, cosine, Jaccard of dead/salient sets): one row per layer and precision. */
export function agreementLayerTable(run: RunData): Built {
  const rowsIn = (run.agreement ?? []).filter((r) => typeof r.layer === 'number');
  if (!rowsIn.length) return EMPTY;
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
  const csv: Csv = { columns: ['layer', 'precision', 'reference', 'metric', 'value'], rows: rowsIn.map((r) => [r.layer, r.precision, r.reference, r.metric, r.value]) };
  return { html: table(['layer', 'precision', ...metrics.map(heading)], rows), csv };
}

/** Per layer, tensor and precision: neuron count and the neuron-averaged mean, variance and near-zero fraction. */
export function neuronTable(run: RunData): Built {
  const rowsIn = run.neurons ?? [];
  if (!rowsIn.length) return EMPTY;
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
  const csv: Csv = { columns: ['layer', 'tensor', 'precision', 'neurons', 'mean_activation', 'mean_variance', 'mean_near_zero_fraction'], rows: sorted.map((g) => [g.layer, g.tensor, g.precision, g.n, g.mean / g.n, g.variance / g.n, g.nearZero / g.n]) };
  return { html: table(['layer', 'tensor', 'precision', 'neurons', 'mean activation', 'mean variance', 'mean near-zero fraction'], rows), csv };
}
