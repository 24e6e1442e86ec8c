/**
 * Reductions of correlation.parquet that several report parts share: where the |r| figures start
 * and the "high-|r| share" of the cross-task table.
 */
import type { RunData } from './load-run.ts';

/** The paper's Figure 4 shows |r| from 0.3 to 1.0. */
export const CORRELATION_BIN_FLOOR = 0.3;

/** A neuron pair is "highly correlated" when |r| ≥ 0.8 (the two top histogram bins). */
export const HIGH_R = 0.8;

export interface HighRShare { high: number; defined: number; share: number }

/**
 * Share of neuron pairs with |r| ≥ HIGH_R among all pairs with a defined correlation, summed over
 * the captured layers. Pairs undefined because a neuron had zero variance are left out of both.
 */
export function highRShare(run: RunData, precision: string): HighRShare | undefined {
  let high = 0, defined = 0;
  for (const r of run.correlation ?? []) {
    if (r.precision !== precision || r.bin_lo === null || r.bin_lo === undefined) continue;
    defined += r.pairs;
    if (r.bin_lo >= HIGH_R - 1e-9) high += r.pairs;
  }
  if (!defined) return undefined;
  return { high, defined, share: high / defined };
}
