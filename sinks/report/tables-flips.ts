/**
 * Examples whose correctness flipped between the reference precision and another one, from
 * predictions.parquet: the concrete cases behind the agreement table's flip counts.
 */
import type { RunData, PredictionColumns } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { dataValue, escapeText, formatMetric } from './format.ts';
import type { Built } from './tables.ts';
import { referenceOf } from './tables.ts';
import type { Csv } from './csv.ts';

/** Rows shown in the HTML; the CSV holds every flip. */
export const FLIPS_SHOWN = 100;

/** `ref` and `q`: row indices in run.predictions (no row objects: a 100k-example run can have tens of thousands of flips). */
export interface Flip { example_id: number; precision: string; reference: string; gold: string; ref: number; q: number; direction: 'right→wrong' | 'wrong→right' }

/** Every flip, ordered by precision (run order) then example id. */
export function flipsOf(run: RunData): Flip[] {
  const ref = referenceOf(run);
  const preds = run.predictions;
  if (!ref || !preds?.length) return [];
  const refK = preds.precision!.indexOf(ref);
  const pk = preds.precision!.ids;
  const ids = preds.exampleId!;
  const correct = preds.correct!;
  // Row index of each example's reference prediction (numbers, not row objects).
  const refRow = new Map<number, number>();
  for (let i = 0; i < preds.length; i++) if (pk[i] === refK) refRow.set(ids[i], i);
  const order = precisionsOf(run);
  const out: Flip[] = [];
  for (let i = 0; i < preds.length; i++) {
    if (pk[i] === refK) continue;
    const r0 = refRow.get(ids[i]);
    if (r0 === undefined || correct[r0] === correct[i]) continue;
    out.push({ example_id: ids[i], precision: preds.precision!.at(i), reference: ref, gold: preds.gold!.at(i), ref: r0, q: i, direction: correct[r0] ? 'right→wrong' : 'wrong→right' });
  }
  return out.sort((a, b) => order.indexOf(a.precision) - order.indexOf(b.precision) || a.example_id - b.example_id);
}

function prediction(preds: PredictionColumns, i: number): string {
  return `${escapeText(JSON.stringify(preds.predictedToken!.at(i) ?? ''))} (${escapeText(formatMetric('confidence', preds.confidence![i]))})`;
}

export function flipsTable(run: RunData): Built & { note?: string } {
  const flips = flipsOf(run);
  if (!run.predictions?.length || precisionsOf(run).length < 2) return { html: '', csv: { columns: [], rows: [] } };
  const ref = referenceOf(run)!;
  const preds = run.predictions;
  const rows = flips.slice(0, FLIPS_SHOWN).map((f) =>
    `<tr${attrs(f)}><td class="num" data-metric="example_id" data-value="${f.example_id}" data-precision="${escapeText(f.precision)}">${f.example_id}</td>` +
    `<td>${escapeText(f.precision)}</td><td>${escapeText(f.direction)}</td><td>${escapeText(JSON.stringify(f.gold ?? ''))}</td>` +
    `<td>${prediction(preds, f.ref)}</td><td>${prediction(preds, f.q)}</td></tr>`);
  const html = flips.length
    ? `<table><thead><tr><th>example</th><th>precision</th><th>flip</th><th>gold</th><th>${escapeText(ref)} prediction (confidence)</th><th>prediction (confidence)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : `<p class="none" data-metric="flips" data-value="0">No example changed correctness against ${escapeText(ref)}.</p>`;
  const csv: Csv = {
    columns: ['example_id', 'precision', 'reference', 'direction', 'gold', 'reference_prediction', 'reference_confidence', 'prediction', 'confidence'],
    rows: flips.map((f) => [f.example_id, f.precision, f.reference, f.direction === 'right→wrong' ? 'correct_to_wrong' : 'wrong_to_correct', f.gold, preds.predictedToken!.at(f.ref), preds.confidence![f.ref], preds.predictedToken!.at(f.q), preds.confidence![f.q]]),
  };
  const note = flips.length > FLIPS_SHOWN ? `First ${FLIPS_SHOWN} of ${formatMetric('count', flips.length)} flips; the CSV holds all.` : flips.length ? `${formatMetric('count', flips.length)} flip${flips.length === 1 ? '' : 's'}.` : undefined;
  return { html, csv, note };
}

function attrs(f: Flip): string {
  return ` class="flip" data-flip="${f.direction === 'right→wrong' ? 'correct_to_wrong' : 'wrong_to_correct'}" data-example="${dataValue(f.example_id)}" data-precision="${escapeText(f.precision)}"`;
}
