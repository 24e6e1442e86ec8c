/**
 * Calibration is computed at the end from predictions.parquet — the compact columnar spill of
 * per-example (confidence, correct) records — so ACE is exact for any dataset size.
 */
import path from 'node:path';
import type { Plan } from './plan.ts';
import { calibrationSummary } from '../operators/estimators/calibration.ts';
import { writeParquetTable } from '../sinks/parquet.ts';
import { readPredictionColumns } from '../sinks/prediction-columns.ts';
import { CALIBRATION_COLUMNS, toColumns } from '../sinks/output-schemas.ts';

/** One precision's (confidence, correct, example_id) columns, in file order: 13 bytes per example. */
export interface CalibrationColumns {
  readonly length: number;
  readonly conf: Float64Array;
  readonly correct: Uint8Array;
  readonly ids: Int32Array;
}

/**
 * The (confidence, correct, example_id) columns per precision, in order of first appearance:
 * predictions.parquet read column-wise (sinks/prediction-columns.ts, 15 bytes per row, no row
 * objects), then each precision's rows copied into columns of exactly their count.
 */
export async function calibrationColumns(file: string): Promise<Map<string, CalibrationColumns>> {
  const all = await readPredictionColumns(file, ['example_id', 'precision', 'confidence', 'correct']);
  const p = all.precision!;
  const counts = new Int32Array(p.values.length);
  for (let i = 0; i < all.length; i++) counts[p.ids[i]]++;
  const cols = p.values.map((_, k) => ({ length: counts[k], conf: new Float64Array(counts[k]), correct: new Uint8Array(counts[k]), ids: new Int32Array(counts[k]) }));
  const filled = new Int32Array(cols.length);
  for (let i = 0; i < all.length; i++) {
    const k = p.ids[i];
    const c = cols[k];
    const j = filled[k]++;
    c.conf[j] = all.confidence![i];
    c.correct[j] = all.correct![i];
    c.ids[j] = all.exampleId![i];
  }
  return new Map(p.values.map((name, k) => [name, cols[k]]));
}

/** Headline calibration numbers per precision (always), and calibration.parquet when asked. */
export async function writeCalibration(plan: Plan, outDir: string, writeTable: boolean): Promise<Record<string, Record<string, unknown>>> {
  const { cfg } = plan;
  const by = await calibrationColumns(path.join(outDir, 'predictions.parquet'));
  const out: Record<string, Record<string, unknown>> = {};
  const rows: Record<string, unknown>[] = [];
  for (const precision of cfg.precisions) {
    const e = by.get(precision);
    if (!e) continue;
    const s = calibrationSummary(e.conf, e.correct, e.ids, {
      widthBins: cfg.calibration.bins,
      resamples: cfg.calibration.bootstrap,
      seed: cfg.calibration.seed,
    });
    out[precision] = {
      accuracy: s.accuracy,
      mean_confidence: s.mean_confidence,
      ace: s.ace,
      ece: s.ece,
      mce: s.mce,
      accuracy_ci: s.ci.accuracy,
      ace_ci: s.ci.ace,
      ci_method: s.ci.method,
    };
    for (const b of s.bins) rows.push({ precision, ...b });
  }
  if (writeTable) await writeParquetTable(path.join(outDir, 'calibration.parquet'), CALIBRATION_COLUMNS, plan.metadata, toColumns(rows, CALIBRATION_COLUMNS) as Record<string, ArrayLike<unknown>>);
  return out;
}
