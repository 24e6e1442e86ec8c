/**
 * Calibration is computed at the end from predictions.parquet — the compact columnar spill of
 * per-example (confidence, correct) records — so ACE is exact for any dataset size.
 */
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import type { Plan } from './plan.ts';
import { calibrationSummary } from '../operators/estimators/calibration.ts';
import { writeParquetTable } from '../sinks/parquet.ts';
import { GrowableArray } from '../core/growable-array.ts';
import { CALIBRATION_COLUMNS, toColumns } from '../sinks/output-schemas.ts';

/** One precision's (confidence, correct, example_id) columns: 13 bytes per example, grown by doubling. */
export class CalibrationColumns {
  readonly conf = new GrowableArray(Float64Array);
  readonly correct = new GrowableArray(Uint8Array);
  readonly ids = new GrowableArray(Int32Array);

  get length(): number {
    return this.conf.length;
  }

  push(conf: number, correct: boolean, id: number): void {
    this.conf.push(conf);
    this.correct.push(correct ? 1 : 0);
    this.ids.push(id);
  }
}

/**
 * The (confidence, correct, example_id) columns per precision, read one row group at a time so
 * only one group's row objects exist at once; the result is three typed columns (13 bytes per
 * example and precision, up to twice that while one grows), which is what exact ACE needs.
 */
export async function readPredictionColumns(file: string): Promise<Map<string, CalibrationColumns>> {
  const buf = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buf);
  const by = new Map<string, CalibrationColumns>();
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows = (await parquetReadObjects({ file: buf, metadata, columns: ['example_id', 'precision', 'confidence', 'correct'], rowStart, rowEnd })) as {
      example_id: number;
      precision: string;
      confidence: number;
      correct: boolean;
    }[];
    for (const r of rows) {
      let e = by.get(r.precision);
      if (!e) by.set(r.precision, (e = new CalibrationColumns()));
      e.push(r.confidence, r.correct, r.example_id);
    }
    rowStart = rowEnd;
  }
  return by;
}

/** Headline calibration numbers per precision (always), and calibration.parquet when asked. */
export async function writeCalibration(plan: Plan, outDir: string, writeTable: boolean): Promise<Record<string, Record<string, unknown>>> {
  const { cfg } = plan;
  const by = await readPredictionColumns(path.join(outDir, 'predictions.parquet'));
  const out: Record<string, Record<string, unknown>> = {};
  const rows: Record<string, unknown>[] = [];
  for (const precision of cfg.precisions) {
    const e = by.get(precision);
    if (!e) continue;
    const s = calibrationSummary(e.conf.view(), e.correct.view(), e.ids.view(), {
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
