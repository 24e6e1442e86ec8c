/**
 * Text escaping and number formatting shared by every figure and table, so that the same
 * metric is always written the same way wherever it appears in the report.
 */

/** Escape text for HTML and SVG (element content and quoted attribute values). */
export function escapeText(s: unknown): string {
  return String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** Metrics that are whole counts: shown with thousands separators. */
const COUNT_METRICS = new Set([
  'examples', 'tokens', 'truncated', 'count', 'pairs', 'undefined_pairs', 'dead_count', 'total', 'union_count',
  'neurons', 'flips_correct_to_wrong', 'flips_wrong_to_correct', 'salient_examples', 'width', 'layers',
  'values', 'cosine_undefined_rows', 'unconverged', 'example_id',
]);

/** Metrics that live in [0, 1]: always three decimals so columns line up and compare. */
const FRACTION_METRICS = new Set([
  'accuracy', 'mean_confidence', 'ace', 'ece', 'mce', 'top1_agreement', 'cosine_mean', 'dead_jaccard',
  'salient_jaccard', 'near_zero_fraction', 'bin_accuracy', 'bin_confidence', 'confidence',
]);

function nonFinite(v: number): string | null {
  if (Number.isNaN(v)) return 'n/a';
  if (v === Infinity) return '∞';
  if (v === -Infinity) return '−∞';
  return null;
}

/** 1234567 → "1,234,567". */
export function formatCount(v: number): string {
  const bad = nonFinite(v);
  if (bad) return bad;
  const sign = v < 0 ? '-' : '';
  const digits = Math.round(Math.abs(v)).toString();
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Compact counts for bar labels: 1234567 → "1.2M", 45300 → "45.3K", 999 → "999". */
export function formatCompact(v: number): string {
  const bad = nonFinite(v);
  if (bad) return bad;
  const a = Math.abs(v);
  const sign = v < 0 ? '-' : '';
  if (a < 1000) return sign + String(Math.round(a));
  const units: [number, string][] = [[1e3, 'K'], [1e6, 'M'], [1e9, 'B'], [1e12, 'T']];
  let i = units.length - 1;
  while (i > 0 && a < units[i][0]) i--;
  // Rounding can carry into the next unit: 999,960 reads "1.0M", not "1000.0K".
  if (Number((a / units[i][0]).toFixed(1)) >= 1000 && i < units.length - 1) i++;
  return `${sign}${(a / units[i][0]).toFixed(1)}${units[i][1]}`;
}

/** Three decimals, for values in [0, 1]. */
export function formatFraction(v: number): string {
  return nonFinite(v) ?? v.toFixed(3);
}

/** Four significant digits for other reals (KL, SQNR, means, variances). */
export function formatReal(v: number): string {
  const bad = nonFinite(v);
  if (bad) return bad;
  if (v === 0) return '0';
  return String(Number(v.toPrecision(4)));
}

/** Shares that are often tiny (the high-|r| share): a percentage to three significant digits. */
const PERCENT_METRICS = new Set(['high_r_share']);

/** 0.000123 → "0.0123%", 0.5 → "50.0%", 0 → "0%". */
export function formatPercent(v: number): string {
  const bad = nonFinite(v);
  if (bad) return bad;
  if (v === 0) return '0%';
  const pct = v * 100;
  return `${Math.abs(pct) >= 1 ? pct.toFixed(Math.max(0, 2 - Math.floor(Math.log10(Math.abs(pct))))) : String(Number(pct.toPrecision(3)))}%`;
}

/** The one place that decides how a named metric is shown. */
export function formatMetric(metric: string, v: number): string {
  if (PERCENT_METRICS.has(metric)) return formatPercent(v);
  if (COUNT_METRICS.has(metric)) return formatCount(v);
  if (FRACTION_METRICS.has(metric)) return formatFraction(v);
  return formatReal(v);
}

/** A difference to a reference value, always signed ("+0.012", "−3", "0.000"), in the metric's own format. */
export function formatDelta(metric: string, d: number): string {
  const bad = nonFinite(d);
  if (bad) return bad;
  // A difference of two shares is in percentage points, not a percentage of anything.
  const body = PERCENT_METRICS.has(metric) ? formatPercent(Math.abs(d)).replace('%', ' pp') : formatMetric(metric, Math.abs(d));
  if (Number(body.replace(/,/g, '').replace(/ pp$/, '')) === 0) return body;
  return (d < 0 ? '−' : '+') + body;
}

/** Exact, round-trippable form for data-value attributes (tests compare it with the files). */
export function dataValue(v: number): string {
  return String(v);
}
