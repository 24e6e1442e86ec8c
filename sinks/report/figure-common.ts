/**
 * What every figure builder shares: the Figure record, the precision order and colours used
 * across all figures and runs, and how many panels share a row.
 */
import type { RunData } from './load-run.ts';
import { precisionsOf } from './load-run.ts';
import { panelWidth, type LegendItem } from './svg.ts';

export interface Figure {
  /** File stem under figures/, e.g. "fig1-accuracy". */
  id: string;
  title: string;
  /** HTML (already escaped) shown under the figure. */
  caption: string;
  svg: string;
}

/** All precisions across runs, in first-seen order, so colours match across figures and runs. */
export function allPrecisions(runs: RunData[]): string[] {
  const out: string[] = [];
  for (const run of runs) for (const p of precisionsOf(run)) if (!out.includes(p)) out.push(p);
  return out;
}

export function precisionLegend(precisions: string[], colours: Map<string, string>): LegendItem[] {
  return precisions.map((p) => ({ label: p, colour: colours.get(p) }));
}

/**
 * Panel width for `count` panels, at most `maxColumns` to a row and never fewer than `minColumns`
 * columns' worth (a lone panel takes half the page, not all of it).
 */
export function widthFor(count: number, maxColumns: number, minColumns = 2): number {
  return panelWidth(Math.max(minColumns, Math.min(count, maxColumns)));
}
