/** All tables for one run, in reading order, skipping the empty ones. */
import type { RunData } from './load-run.ts';
import { agreementLayerTable, agreementOutputTable, deadTable, metadataTable, neuronTable, precisionTable, salientTable, type Built, type Table } from './tables.ts';
import { flipsTable } from './tables-flips.ts';

export function buildTables(run: RunData): Table[] {
  const all: [string, string, Built & { note?: string }][] = [
    ['metadata', 'Run metadata', metadataTable(run)],
    ['precisions', 'Results per precision', precisionTable(run)],
    ['agreement-output', 'Cross-precision agreement (output level; KL in nats)', agreementOutputTable(run)],
    ['agreement-layers', 'Cross-precision agreement per layer', agreementLayerTable(run)],
    ['dead', 'Dead neurons per layer (dead / total)', deadTable(run)],
    ['salient', 'Salient neurons per layer (union over examples)', salientTable(run)],
    ['flips', 'Examples whose correctness flipped against the reference', flipsTable(run)],
    ['neurons', 'Activation statistics per layer', neuronTable(run)],
  ];
  return all.filter(([, , b]) => b.html !== '').map(([id, title, b]) => ({ id, title, html: b.html, csv: b.csv, note: b.note }));
}
