/**
 * Examples whose correctness flipped between the reference precision and another one, from
 * predictions.parquet: the concrete cases behind the agreement table's flip counts.
 */
import type { RunData, PredictionRow } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatMetric } from './format.ts';
import type { Built } from './tables.ts';
import { referenceOf } from './tables.ts';
import type { Csv } from './csv.ts';

/** Rows shown in the HTML; the CSV holds every flip. */
export const FLIPS_SHOWN = 100;

export interface Flip { example_id: number; precision: string; reference: string; gold: string; ref: PredictionRow; q: PredictionRow; direction: 'right→wrong' | 'wrong→right' }

/** Every flip, ordered by precision (run order) then example id. */
export function flipsOf(run: RunData): Flip[] {
  const ref = referenceOf(run);
  const preds = run.predictions ?? [];
  if (!ref || !preds.length) return [];
  const refById = new Map<number, PredictionRow>();
  for (const r of preds) if (r.precision === ref) refById.set(r.example_id, r);
  const order = precisionsOf(run);
  const out: Flip[] = [];
  for (const q of preds) {
    if (q.precision === ref) continue;
    const r0 = refById.get(q.example_id);
    if (!r0 || Boolean(r0.correct) === Boolean(q.correct)) continue;
    out.push({ example_id: q.example_id, precision: q.precision, reference: ref, gold: q.gold, ref: r0, q, direction: r0.correct ? 'right→wrong' : 'wrong→right' });
  }
  return out.sort((a, b) => order.indexOf(a.precision) - order.indexOf(b.precision) || a.example_id - b.example_id);
}

function prediction(p: PredictionRow): string {
  return `${escapeText(JSON.stringify(p.predicted_token ?? ''))} (${escapeText(formatMetric('confidence', p.confidence))})`;
}

export function flipsTable(run: RunData): Built & { note?: string } {
  const flips = flipsOf(run);
  if (!run.predictions?.length || precisionsOf(run).length < 2) return { html: '', csv: { columns: [], rows: [] } };
  const ref = referenceOf(run)!;
  const rows = flips.slice(0, FLIPS_SHOWN).map((f) =>
    `<tr${attrs(f)}><td class="num" data-metric="example_id" data-value="${f.example_id}" data-precision="${escapeText(f.precision)}">${f.example_id}</td>` +
    `<td>${escapeText(f.precision)}</td><td>${escapeText(f.direction)}</td><td>${escapeText(JSON.stringify(f.gold ?? ''))}</td>` +
    `<td>${prediction(f.ref)}</td><td>${prediction(f.q)}</td></tr>`);
  const html = flips.length
    ? `<table><thead><tr><th>example</th><th>precision</th><th>flip</th><th>gold</th><th>${escapeText(ref)} prediction (confidence)</th><th>prediction (confidence)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : `<p class="none" data-metric="flips" data-value="0">No example changed correctness against ${escapeText(ref)}.</p>`;
  const csv: Csv = {
    columns: ['example_id', 'precision', 'reference', 'direction', 'gold', 'reference_prediction', 'reference_confidence', 'prediction', 'confidence'],
    rows: flips.map((f) => [f.example_id, f.precision, f.reference, f.direction === 'right→wrong' ? 'correct_to_wrong' : 'wrong_to_correct', f.gold, f.ref.predicted_token, f.ref.confidence, f.q.predicted_token, f.q.confidence]),
  };
  const note = flips.length > FLIPS_SHOWN ? `First ${FLIPS_SHOWN} of ${formatMetric('count', flips.length)} flips; the CSV holds all.` : flips.length ? `${formatMetric('count', flips.length)} flip${flips.length === 1 ? '' : 's'}.` : undefined;
  return { html, csv, note };
}

function attrs(f: Flip): string {
  return ` class="flip" data-flip="${f.direction === 'right→wrong' ? 'correct_to_wrong' : 'wrong_to_correct'}" data-example="${dataValue(f.example_id)}" data-precision="${escapeText(f.precision)}"`;
}
