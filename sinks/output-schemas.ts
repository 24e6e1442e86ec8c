/** Column contracts of the output Parquet files (extend, don't rename). */
import { openParquetSink, type ColumnSpec, type ParquetSink } from './parquet.ts';

export const PREDICTIONS_COLUMNS: ColumnSpec[] = [
  { name: 'example_id', type: 'int32' },
  { name: 'precision', type: 'utf8' },
  { name: 'gold', type: 'utf8' },
  { name: 'predicted_token_id', type: 'int32' },
  { name: 'predicted_token', type: 'utf8' },
  { name: 'confidence', type: 'double' },
  { name: 'correct', type: 'bool' },
  { name: 'truncated', type: 'bool' },
  /** choices and loglik modes: each choice's log-likelihood and its token count, in the order of scoring.choices. */
  { name: 'choice_loglik', type: 'list<double>', nullable: true },
  { name: 'choice_tokens', type: 'list<int32>', nullable: true },
  /** The rendered prompt, with `predictions.prompt: true` (like lm-evaluation-harness --log_samples). */
  { name: 'prompt', type: 'utf8', nullable: true },
];

/** predictions.parquet is streamed one row group at a time; 16k rows keeps that buffer small. */
export const PREDICTIONS_ROW_GROUP = 16_384;

/** A streaming predictions.parquet (or a checkpoint part of it), the same for run, resume and merge. */
export function openPredictionsSink(file: string, metadata: Record<string, string>): Promise<ParquetSink> {
  return openParquetSink(file, PREDICTIONS_COLUMNS, metadata, { rowGroupRows: PREDICTIONS_ROW_GROUP });
}

export const NEURONS_COLUMNS: ColumnSpec[] = [
  { name: 'layer', type: 'int32' },
  { name: 'tensor', type: 'utf8' },
  { name: 'neuron', type: 'int32' },
  { name: 'precision', type: 'utf8' },
  { name: 'count', type: 'int64' },
  { name: 'mean', type: 'double' },
  { name: 'variance', type: 'double' },
  { name: 'min', type: 'double' },
  { name: 'max', type: 'double' },
  { name: 'near_zero_fraction', type: 'double' },
];

export const CALIBRATION_COLUMNS: ColumnSpec[] = [
  { name: 'precision', type: 'utf8' },
  { name: 'scheme', type: 'utf8' },
  { name: 'bin', type: 'int32' },
  { name: 'count', type: 'int64' },
  { name: 'accuracy', type: 'double', nullable: true },
  { name: 'mean_confidence', type: 'double', nullable: true },
  { name: 'lo', type: 'double', nullable: true },
  { name: 'hi', type: 'double', nullable: true },
];

export const DEAD_COLUMNS: ColumnSpec[] = [
  { name: 'layer', type: 'int32' },
  { name: 'tensor', type: 'utf8' },
  { name: 'precision', type: 'utf8' },
  { name: 'dead_count', type: 'int32' },
  { name: 'total', type: 'int32' },
  { name: 'dead_ids', type: 'list<int32>' },
];

export const CORRELATION_COLUMNS: ColumnSpec[] = [
  { name: 'layer', type: 'int32' },
  { name: 'tensor', type: 'utf8' },
  { name: 'precision', type: 'utf8' },
  { name: 'bin_lo', type: 'double', nullable: true },
  { name: 'bin_hi', type: 'double', nullable: true },
  { name: 'pairs', type: 'int64' },
];

export const AGREEMENT_COLUMNS: ColumnSpec[] = [
  { name: 'precision', type: 'utf8' },
  { name: 'reference', type: 'utf8' },
  { name: 'layer', type: 'int32', nullable: true },
  { name: 'tensor', type: 'utf8', nullable: true },
  { name: 'metric', type: 'utf8' },
  { name: 'value', type: 'double' },
];

export const SALIENCE_COLUMNS: ColumnSpec[] = [
  { name: 'layer', type: 'int32' },
  { name: 'tensor', type: 'utf8' },
  { name: 'precision', type: 'utf8' },
  { name: 'neuron', type: 'int32' },
  { name: 'salient_examples', type: 'int32' },
  { name: 'mean_abs_attr', type: 'double' },
];

/** Rows (objects) → columns for a sink. */
export function toColumns<T extends object>(rows: T[], columns: ColumnSpec[]): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const c of columns) out[c.name] = rows.map((r) => (r as Record<string, unknown>)[c.name] ?? null);
  return out;
}
