/**
 * One number per (run, precision) for each headline quantity of the paper, as the cross-run and
 * cross-task tables show them: accuracy, confidence and ACE (summary.json, else recomputed),
 * dead and salient neurons summed over the captured layers, and the high-|r| share.
 */
import type { RunData } from './load-run.ts';
import { precisionMetric } from './figures.ts';
import { salientCounts } from './salience-data.ts';
import { highRShare } from './correlation-data.ts';

export interface RunPrecisionMetrics {
  accuracy?: number;
  mean_confidence?: number;
  ace?: number;
  /** Σ over layers of dead_count, and of total. */
  dead?: number;
  dead_total?: number;
  /** Σ over layers of the salient union, and unconverged attributed examples over those layers. */
  salient?: number;
  salient_unconverged?: number;
  high_r_share?: number;
}

export const RUN_METRICS = ['accuracy', 'mean_confidence', 'ace', 'dead', 'salient', 'high_r_share'] as const;
export type RunMetric = (typeof RUN_METRICS)[number];

export const RUN_METRIC_HEADINGS: Record<RunMetric, string> = {
  accuracy: 'accuracy', mean_confidence: 'mean confidence', ace: 'ACE', dead: 'dead neurons (Σ layers)', salient: 'salient neurons (Σ layers)', high_r_share: 'high-|r| share',
};

/** Format used for each quantity (format.ts metric names). */
export const RUN_METRIC_FORMAT: Record<RunMetric, string> = {
  accuracy: 'accuracy', mean_confidence: 'mean_confidence', ace: 'ace', dead: 'dead_count', salient: 'union_count', high_r_share: 'high_r_share',
};

export function runPrecisionMetrics(run: RunData, precision: string): RunPrecisionMetrics {
  const out: RunPrecisionMetrics = {};
  for (const k of ['accuracy', 'mean_confidence', 'ace'] as const) out[k] = precisionMetric(run, precision, k)?.value;
  const dead = (run.dead ?? []).filter((d) => d.precision === precision);
  if (dead.length) {
    out.dead = dead.reduce((a, d) => a + d.dead_count, 0);
    out.dead_total = dead.reduce((a, d) => a + d.total, 0);
  }
  const sal = salientCounts(run).filter((c) => c.precision === precision);
  if (sal.length) {
    out.salient = sal.reduce((a, c) => a + c.value, 0);
    out.salient_unconverged = sal.reduce((a, c) => a + (c.completeness?.unconverged ?? 0), 0);
  }
  out.high_r_share = highRShare(run, precision)?.share;
  return out;
}
