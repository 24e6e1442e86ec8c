/**
 * Reads one run folder (summary.json + the Parquet files a run writes) into plain typed rows.
 * Every input is optional: a missing file gives `undefined`, so each panel of the report can be
 * drawn only when its data exists. Int64 columns come back from hyparquet as bigint; they are
 * turned into numbers here once so that no figure code has to care.
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { QuantlensError } from '../../core/errors.ts';
import { rowGroupRanges } from '../parquet-row-groups.ts';
import { readPredictionColumns, type PredictionColumns, type PredictionField } from '../prediction-columns.ts';

export type { PredictionColumns, PredictionRow } from '../prediction-columns.ts';

export interface PrecisionSummary {
  examples?: number;
  tokens?: number;
  accuracy?: number;
  mean_confidence?: number;
  ace?: number;
  ece?: number;
  mce?: number;
  accuracy_ci?: [number, number];
  ace_ci?: [number, number];
  quantization?: Record<string, unknown>;
}

export interface RunSummary {
  name?: string;
  model?: { path?: string; hash?: string; demo?: boolean; label?: string };
  dataset?: { path?: string; examples?: number };
  precisions?: Record<string, PrecisionSummary>;
  reference?: string;
  ort?: { version?: string; settings?: Record<string, unknown> };
  truncated?: number;
  wall_seconds?: number;
  tokens_per_second?: number;
  layers?: { layer: number; tensor?: string; width?: number }[];
  salience?: Record<string, Record<string, { union_count?: number }>>;
}

const PREDICTION_COLUMNS: PredictionField[] = ['example_id', 'precision', 'gold', 'predicted_token_id', 'predicted_token', 'confidence', 'correct'];

export interface CalibrationRow { precision: string; scheme: string; bin: number; count: number; accuracy: number; mean_confidence: number; lo: number; hi: number }
export interface NeuronRow { layer: number; tensor: string; neuron: number; precision: string; count: number; mean: number; variance: number; min: number; max: number; near_zero_fraction: number }
export interface DeadRow { layer: number; precision: string; dead_count: number; total: number; dead_ids: number[] }
export interface CorrelationRow { layer: number; precision: string; bin_lo: number | null; bin_hi: number | null; pairs: number }
export interface AgreementRow { precision: string; reference: string; layer: number | null; metric: string; value: number }
export interface SalienceRow { layer: number; precision: string; neuron: number; salient_examples: number; mean_abs_attr: number }

export interface RunData {
  dir: string;
  /** Display name: summary.name, else the folder name. */
  name: string;
  /** Model name for grouping: last part of summary.model.path, else the hash prefix, else "model". */
  model: string;
  /** Dataset name for panels: file name of summary.dataset.path without extension, else the run name. */
  dataset: string;
  summary?: RunSummary;
  /** Typed columns, not row objects: one per example and precision would be most of the report's memory. */
  predictions?: PredictionColumns;
  calibration?: CalibrationRow[];
  neurons?: NeuronRow[];
  dead?: DeadRow[];
  correlation?: CorrelationRow[];
  agreement?: AgreementRow[];
  salience?: SalienceRow[];
}

/** bigint → number; everything else unchanged. Nested arrays (dead_ids) are converted too. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

/**
 * One row group at a time, values made plain in place: a 100k-example predictions.parquet at the
 * end of a run otherwise decoded every column, its row objects and a converted copy of each at once.
 */
async function readParquet<T>(file: string, columns?: string[]): Promise<T[] | undefined> {
  if (!existsSync(file)) return undefined;
  const out: T[] = [];
  try {
    const buf = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buf);
    for (const { rowStart, rowEnd } of rowGroupRanges(metadata)) {
      const rows = (await parquetReadObjects({ file: buf, metadata, columns, rowStart, rowEnd })) as Record<string, unknown>[];
      for (const r of rows) {
        for (const k in r) r[k] = plain(r[k]);
        out.push(r as T);
      }
    }
  } catch (e) {
    throw new QuantlensError('IO', `cannot read Parquet file: ${(e as Error).message}`, file, { cause: e });
  }
  return out;
}

async function readSummary(file: string): Promise<RunSummary | undefined> {
  if (!existsSync(file)) return undefined;
  const text = await fsp.readFile(file, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new QuantlensError('IO', `summary.json is not valid JSON: ${(e as Error).message}`, file, { cause: e });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new QuantlensError('IO', 'summary.json must hold a JSON object', file);
  }
  return parsed as RunSummary;
}

function baseNameWithoutExt(p: string): string {
  const base = path.basename(p.replace(/[\\/]+$/, ''));
  const ext = path.extname(base);
  return ext ? base.slice(0, -ext.length) : base;
}

export async function loadRun(dir: string): Promise<RunData> {
  if (!existsSync(dir)) throw new QuantlensError('IO', 'run folder does not exist', dir);
  const summary = await readSummary(path.join(dir, 'summary.json'));
  // Predictions feed the table of flipped examples (and headline numbers a summary lacks). Only the
  // columns the report uses are read, as typed columns: ~30 bytes per example and precision.
  const predictionsFile = path.join(dir, 'predictions.parquet');
  const [predictions, calibration, neurons, dead, correlation, agreement, salience] = await Promise.all([
    existsSync(predictionsFile) ? readPredictionColumns(predictionsFile, PREDICTION_COLUMNS) : undefined,
    readParquet<CalibrationRow>(path.join(dir, 'calibration.parquet')),
    readParquet<NeuronRow>(path.join(dir, 'neurons.parquet')),
    readParquet<DeadRow>(path.join(dir, 'dead.parquet')),
    readParquet<CorrelationRow>(path.join(dir, 'correlation.parquet')),
    readParquet<AgreementRow>(path.join(dir, 'agreement.parquet')),
    readParquet<SalienceRow>(path.join(dir, 'salience.parquet')),
  ]);
  const name = typeof summary?.name === 'string' && summary.name ? summary.name : path.basename(path.resolve(dir));
  const modelPath = summary?.model?.path;
  const model = typeof modelPath === 'string' && modelPath
    ? path.basename(modelPath.replace(/[\\/]+$/, ''))
    : typeof summary?.model?.hash === 'string' && summary.model.hash ? summary.model.hash.slice(0, 12) : 'model';
  const dataPath = summary?.dataset?.path;
  const dataset = typeof dataPath === 'string' && dataPath ? baseNameWithoutExt(dataPath) : name;
  return { dir, name, model, dataset, summary, predictions, calibration, neurons, dead, correlation, agreement, salience };
}

/** True when the folder holds at least one input the report can draw. */
export function hasAnyInput(run: RunData): boolean {
  return Boolean(run.summary || run.predictions?.length || run.calibration?.length || run.neurons?.length ||
    run.dead?.length || run.correlation?.length || run.agreement?.length || run.salience?.length);
}

/** Finite number or undefined (summary fields may be missing, null or strings). */
export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * Precision names in a stable order: the reference first, then the order of summary.precisions,
 * then any precision that only appears in Parquet files, in order of first appearance.
 */
export function precisionsOf(run: RunData): string[] {
  const seen: string[] = [];
  const add = (p: unknown) => { if (typeof p === 'string' && !seen.includes(p)) seen.push(p); };
  if (run.summary?.reference && run.summary.precisions && run.summary.reference in run.summary.precisions) add(run.summary.reference);
  for (const p of Object.keys(run.summary?.precisions ?? {})) add(p);
  for (const p of run.predictions?.precision?.values ?? []) add(p);
  for (const rows of [run.calibration, run.neurons, run.dead, run.correlation, run.agreement, run.salience]) {
    for (const r of rows ?? []) add((r as { precision: string }).precision);
  }
  return seen;
}
