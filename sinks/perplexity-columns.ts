/** Column contract of perplexity.parquet (`measure: perplexity`; extend, don't rename). */
import type { ColumnSpec } from './parquet.ts';

/**
 * Long format, one row per (precision, figure): `metric` names a figure of llama.cpp's
 * --kl-divergence summary (ppl, ppl_base, ppl_ratio, kld_mean, kld_p99, delta_p_rms, same_top_p, …),
 * `uncertainty` is its ± where llama.cpp gives one, `positions` the number of scored positions.
 * The reference precision has only its own ppl and ln_ppl.
 */
export const PERPLEXITY_COLUMNS: ColumnSpec[] = [
  { name: 'precision', type: 'utf8' },
  { name: 'reference', type: 'utf8' },
  { name: 'metric', type: 'utf8' },
  { name: 'value', type: 'double' },
  { name: 'uncertainty', type: 'double', nullable: true },
  { name: 'positions', type: 'int64' },
];
