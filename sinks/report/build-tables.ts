/** All tables for one run, in reading order, skipping the empty ones. */
import type { RunData } from './load-run.ts';
import { agreementLayerTable, agreementOutputTable, deadTable, metadataTable, neuronTable, precisionTable, salientTable, type Built, type Table } from './tables.ts';
import { flipsTable } from './tables-flips.ts';
import { salientCounts } from './salience-data.ts';

/** Salient-set Jaccard rests on the same attributions as the salient counts: flag unconverged ones beside it too. */
function jaccardNote(run: RunData): string | undefined {
  if (!(run.agreement ?? []).some((r) => r.metric === 'salient_jaccard')) return undefined;
  const hit = salientCounts(run).filter((c) => (c.completeness?.unconverged ?? 0) > 0);
  if (!hit.length) return undefined;
  return `⚠ salient-set Jaccard uses attributions with unconverged examples at ${hit.map((c) => `layer ${c.layer} ${c.precision} (${c.completeness!.unconverged}/${c.completeness!.count})`).join(', ')}; see Figure 7.`;
}

export function buildTables(run: RunData): Table[] {
  const all: [string, string, Built & { note?: string }][] = [
    ['metadata', 'Run metadata', metadataTable(run)],
    ['precisions', 'Results per precision', precisionTable(run)],
    ['agreement-output', 'Cross-precision agreement (output level; KL in nats)', agreementOutputTable(run)],
    ['agreement-layers', 'Cross-precision agreement per layer', { ...agreementLayerTable(run), note: jaccardNote(run) }],
    ['dead', 'Dead neurons per layer (dead / total)', deadTable(run)],
    ['salient', 'Salient neurons per layer (union over examples)', salientTable(run)],
    ['flips', 'Examples whose correctness flipped against the reference', flipsTable(run)],
    ['neurons', 'Activation statistics per layer', neuronTable(run)],
  ];
  return all.filter(([, , b]) => b.html !== '').map(([id, title, b]) => ({ id, title, html: b.html, csv: b.csv, note: b.note }));
}
