/**
 * Builds a run folder in os.tmpdir() with the Parquet schemas a quantlens run writes, filled with
 * seeded pseudo-random numbers, and returns those numbers so tests can check the report against
 * them. Nothing binary is committed: every fixture is generated here.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { mulberry32 as rng } from '../../../core/random.ts';
import { tempDir } from '../../helpers/temp.ts';

export type Part = 'summary' | 'predictions' | 'calibration' | 'neurons' | 'dead' | 'correlation' | 'agreement' | 'salience';
export const ALL_PARTS: Part[] = ['summary', 'predictions', 'calibration', 'neurons', 'dead', 'correlation', 'agreement', 'salience'];

export interface FixtureOptions {
  name?: string;
  modelPath?: string;
  datasetPath?: string;
  demo?: boolean;
  seed?: number;
  parts?: Part[];
  precisions?: string[];
  /** Leave accuracy / mean_confidence / ace out of summary.json (report must recompute them). */
  summaryWithoutMetrics?: boolean;
}

export interface Fixture {
  dir: string;
  summary: any;
  predictions: { example_id: number; precision: string; gold: string; predicted_token_id: number; predicted_token: string; confidence: number; correct: boolean }[];
  calibration: { precision: string; scheme: string; bin: number; count: number; accuracy: number; mean_confidence: number; lo: number; hi: number }[];
  neurons: { layer: number; tensor: string; neuron: number; precision: string; count: number; mean: number; variance: number; min: number; max: number; near_zero_fraction: number }[];
  dead: { layer: number; precision: string; dead_count: number; total: number; dead_ids: number[] }[];
  correlation: { layer: number; precision: string; bin_lo: number | null; bin_hi: number | null; pairs: number }[];
  agreement: { precision: string; reference: string; layer: number | null; metric: string; value: number }[];
  salience: { layer: number; precision: string; neuron: number; salient_examples: number; mean_abs_attr: number }[];
}


type Col = { name: string; data: unknown[]; type: string; list?: boolean; nullable?: boolean };

function writeParquet(file: string, cols: Col[]): void {
  const schema: any[] = [{ name: 'root', num_children: cols.length }];
  for (const c of cols) {
    if (c.list) {
      schema.push({ name: c.name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 });
      schema.push({ name: 'list', repetition_type: 'REPEATED', num_children: 1 });
      schema.push({ name: 'element', type: c.type, repetition_type: 'OPTIONAL' });
    } else if (c.type === 'UTF8') {
      schema.push({ name: c.name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: c.nullable ? 'OPTIONAL' : 'REQUIRED' });
    } else {
      schema.push({ name: c.name, type: c.type, repetition_type: c.nullable ? 'OPTIONAL' : 'REQUIRED' });
    }
  }
  const columnData = cols.map((c) => ({ name: c.name, data: c.type === 'INT64' ? c.data.map((v) => BigInt(v as number)) : c.data }));
  const buf = parquetWriteBuffer({ columnData: columnData as any, schema });
  writeFileSync(file, new Uint8Array(buf));
}

/** The summary.json completeness record for per-example errors (ids 0..n-1; > 5% = unconverged). */
function completenessOf(errors: number[]) {
  const sorted = [...errors].sort((a, b) => a - b);
  const n = sorted.length;
  return {
    count: n, min: sorted[0], median: (sorted[n / 2 - 1] + sorted[n / 2]) / 2, p90: sorted[Math.ceil(0.9 * n) - 1], max: sorted[n - 1],
    above_threshold: errors.filter((e) => e > 0.05).length,
    unconverged_example_ids: errors.map((e, i) => (e > 0.05 ? i : -1)).filter((i) => i >= 0),
  };
}

export function makeRun(o: FixtureOptions = {}): Fixture {
  const rand = rng(o.seed ?? 1);
  const parts = new Set(o.parts ?? ALL_PARTS);
  const precisions = o.precisions ?? ['fp32', 'int8', 'nf4'];
  const reference = precisions[0];
  const dir = tempDir('quantlens-report-');
  const layers = [0, 3];
  const width = 8;
  const round = (v: number, d = 6) => Number(v.toFixed(d));

  const predictions: Fixture['predictions'] = [];
  for (const p of precisions) {
    for (let i = 0; i < 40; i++) {
      const correct = rand() < 0.6;
      predictions.push({ example_id: i, precision: p, gold: correct ? 'yes' : 'no', predicted_token_id: correct ? 10 : 11, predicted_token: 'yes', confidence: round(0.3 + 0.7 * rand()), correct });
    }
  }

  const calibration: Fixture['calibration'] = [];
  for (const p of precisions) {
    for (const [scheme, n] of [['equal-width', 10], ['equal-mass', 5]] as const) {
      for (let b = 0; b < n; b++) {
        const lo = scheme === 'equal-width' ? b / n : round(0.2 + (0.8 * b) / n);
        const hi = scheme === 'equal-width' ? (b + 1) / n : round(0.2 + (0.8 * (b + 1)) / n);
        const empty = scheme === 'equal-width' && b < 2; // low-confidence bins often hold nothing
        calibration.push({ precision: p, scheme, bin: b, count: empty ? 0 : 1 + Math.floor(rand() * 30), accuracy: empty ? NaN : round(rand()), mean_confidence: empty ? NaN : round(lo + (hi - lo) * rand()), lo, hi });
      }
    }
  }

  const neurons: Fixture['neurons'] = [];
  for (const layer of layers) for (const p of precisions) for (let n = 0; n < width; n++) {
    const mean = round(rand() * 2 - 1), variance = round(rand() * 3);
    neurons.push({ layer, tensor: `/model/layers.${layer}/mlp/act_fn/Mul_output_0`, neuron: n, precision: p, count: 40 + n, mean, variance, min: mean - 2, max: mean + 2, near_zero_fraction: round(rand()) });
  }

  const dead: Fixture['dead'] = [];
  for (const layer of layers) for (const p of precisions) {
    const ids = Array.from({ length: width }, (_, i) => i).filter(() => rand() < 0.3);
    dead.push({ layer, precision: p, dead_count: ids.length, total: width, dead_ids: ids });
  }

  const correlation: Fixture['correlation'] = [];
  for (const layer of layers) for (const p of precisions) {
    for (let b = 0; b < 10; b++) {
      // Counts spanning 10^1..10^6 so labels exercise compact K/M forms.
      let pairs = Math.floor(10 ** (6 - b * 0.5) * (0.5 + rand()));
      // The top bin holds 0 pairs for the third precision and 1 pair (one layer) for the second: the log axis must tell them apart.
      if (b === 9 && p === precisions[2]) pairs = 0;
      if (b === 9 && p === precisions[1]) pairs = layer === layers[0] ? 1 : 0;
      correlation.push({ layer, precision: p, bin_lo: b / 10, bin_hi: (b + 1) / 10, pairs });
    }
    correlation.push({ layer, precision: p, bin_lo: null, bin_hi: null, pairs: Math.floor(rand() * 50) });
  }

  const agreement: Fixture['agreement'] = [];
  for (const p of precisions.slice(1)) {
    for (const m of ['kl_mean', 'kl_median', 'kl_p90', 'kl_p99', 'kl_max', 'top1_agreement', 'delta_p_mean']) agreement.push({ precision: p, reference, layer: null, metric: m, value: round(rand() * (m === 'top1_agreement' ? 1 : 0.05), 8) });
    for (const m of ['flips_correct_to_wrong', 'flips_wrong_to_correct']) agreement.push({ precision: p, reference, layer: null, metric: m, value: Math.floor(rand() * 9) });
    for (const layer of layers) {
      for (const m of ['sqnr_db', 'cosine_mean', 'dead_jaccard', 'salient_jaccard']) agreement.push({ precision: p, reference, layer, metric: m, value: round(m === 'sqnr_db' ? 10 + rand() * 30 : rand()) });
    }
  }

  const salience: Fixture['salience'] = [];
  for (const layer of layers) for (const p of precisions) for (let n = 0; n < width; n++) {
    salience.push({ layer, precision: p, neuron: n, salient_examples: rand() < 0.5 ? 0 : 1 + Math.floor(rand() * 10), mean_abs_attr: round(rand()) });
  }

  const summaryPrecisions: Record<string, any> = {};
  for (const p of precisions) {
    const mine = predictions.filter((r) => r.precision === p);
    const acc = mine.filter((r) => r.correct).length / mine.length;
    const entry: any = {
      examples: mine.length, tokens: mine.length * 37, ece: round(rand() * 0.2), mce: round(rand() * 0.5),
      quantization: p === 'fp32' ? {} : { scheme: p, block_size: 64, symmetric: p === 'int8' },
    };
    if (!o.summaryWithoutMetrics) {
      Object.assign(entry, { accuracy: acc, mean_confidence: round(0.5 + rand() * 0.4), ace: round(rand() * 0.2), accuracy_ci: [round(acc - 0.08), round(acc + 0.07)] });
      entry.ace_ci = [round(entry.ace * 0.5), round(entry.ace * 1.5)];
    }
    summaryPrecisions[p] = entry;
  }
  const salienceSummary: Record<string, Record<string, { union_count: number; examples: number; completeness: any }>> = {};
  for (const p of precisions) {
    salienceSummary[p] = {};
    for (const layer of layers) {
      // Layer 0 is the sharp integrand: its errors reach far above the 5% flag, as on stories260K.
      const errors = Array.from({ length: 8 }, () => round((layer === 0 ? 0.5 : 0.03) * rand() ** 2, 9));
      salienceSummary[p][String(layer)] = { union_count: salience.filter((s) => s.precision === p && s.layer === layer && s.salient_examples > 0).length, examples: 8, completeness: completenessOf(errors) };
    }
  }
  const summary = {
    name: o.name ?? 'fixture-run',
    model: { path: o.modelPath ?? '/models/stories260K-onnx', hash: 'sha256:0123456789abcdef', demo: o.demo ?? false, label: o.demo ? 'demo model, random weights' : 'stories260K' },
    dataset: { path: o.datasetPath ?? '/data/boolq.csv', examples: 40 },
    precisions: summaryPrecisions,
    reference,
    ort: { version: '1.30.0', settings: { intra_op_num_threads: 2, graph_optimization_level: 'all' } },
    truncated: 3,
    wall_seconds: 12.75,
    tokens_per_second: 1234.5678,
    layers: layers.map((l) => ({ layer: l, tensor: `/model/layers.${l}/mlp/act_fn/Mul_output_0`, width })),
    salience: salienceSummary,
  };

  if (parts.has('summary')) writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2));
  const f = (n: string) => path.join(dir, n);
  const pick = <T>(rows: T[], k: keyof T) => rows.map((r) => r[k]);
  if (parts.has('predictions')) writeParquet(f('predictions.parquet'), [
    { name: 'example_id', type: 'INT32', data: pick(predictions, 'example_id') }, { name: 'precision', type: 'UTF8', data: pick(predictions, 'precision') },
    { name: 'gold', type: 'UTF8', data: pick(predictions, 'gold') }, { name: 'predicted_token_id', type: 'INT32', data: pick(predictions, 'predicted_token_id') },
    { name: 'predicted_token', type: 'UTF8', data: pick(predictions, 'predicted_token') }, { name: 'confidence', type: 'DOUBLE', data: pick(predictions, 'confidence') },
    { name: 'correct', type: 'BOOLEAN', data: pick(predictions, 'correct') },
  ]);
  if (parts.has('calibration')) writeParquet(f('calibration.parquet'), [
    { name: 'precision', type: 'UTF8', data: pick(calibration, 'precision') }, { name: 'scheme', type: 'UTF8', data: pick(calibration, 'scheme') },
    { name: 'bin', type: 'INT32', data: pick(calibration, 'bin') }, { name: 'count', type: 'INT64', data: pick(calibration, 'count') },
    { name: 'accuracy', type: 'DOUBLE', data: pick(calibration, 'accuracy') }, { name: 'mean_confidence', type: 'DOUBLE', data: pick(calibration, 'mean_confidence') },
    { name: 'lo', type: 'DOUBLE', data: pick(calibration, 'lo') }, { name: 'hi', type: 'DOUBLE', data: pick(calibration, 'hi') },
  ]);
  if (parts.has('neurons')) writeParquet(f('neurons.parquet'), [
    { name: 'layer', type: 'INT32', data: pick(neurons, 'layer') }, { name: 'tensor', type: 'UTF8', data: pick(neurons, 'tensor') },
    { name: 'neuron', type: 'INT32', data: pick(neurons, 'neuron') }, { name: 'precision', type: 'UTF8', data: pick(neurons, 'precision') },
    { name: 'count', type: 'INT64', data: pick(neurons, 'count') },
    ...(['mean', 'variance', 'min', 'max', 'near_zero_fraction'] as const).map((k) => ({ name: k, type: 'DOUBLE', data: pick(neurons, k) })),
  ]);
  if (parts.has('dead')) writeParquet(f('dead.parquet'), [
    { name: 'layer', type: 'INT32', data: pick(dead, 'layer') }, { name: 'precision', type: 'UTF8', data: pick(dead, 'precision') },
    { name: 'dead_count', type: 'INT32', data: pick(dead, 'dead_count') }, { name: 'total', type: 'INT32', data: pick(dead, 'total') },
    { name: 'dead_ids', type: 'INT32', data: pick(dead, 'dead_ids'), list: true },
  ]);
  if (parts.has('correlation')) writeParquet(f('correlation.parquet'), [
    { name: 'layer', type: 'INT32', data: pick(correlation, 'layer') }, { name: 'precision', type: 'UTF8', data: pick(correlation, 'precision') },
    { name: 'bin_lo', type: 'DOUBLE', data: pick(correlation, 'bin_lo'), nullable: true }, { name: 'bin_hi', type: 'DOUBLE', data: pick(correlation, 'bin_hi'), nullable: true },
    { name: 'pairs', type: 'INT64', data: pick(correlation, 'pairs') },
  ]);
  if (parts.has('agreement')) writeParquet(f('agreement.parquet'), [
    { name: 'precision', type: 'UTF8', data: pick(agreement, 'precision') }, { name: 'reference', type: 'UTF8', data: pick(agreement, 'reference') },
    { name: 'layer', type: 'INT32', data: pick(agreement, 'layer'), nullable: true }, { name: 'metric', type: 'UTF8', data: pick(agreement, 'metric') },
    { name: 'value', type: 'DOUBLE', data: pick(agreement, 'value') },
  ]);
  if (parts.has('salience')) writeParquet(f('salience.parquet'), [
    { name: 'layer', type: 'INT32', data: pick(salience, 'layer') }, { name: 'precision', type: 'UTF8', data: pick(salience, 'precision') },
    { name: 'neuron', type: 'INT32', data: pick(salience, 'neuron') }, { name: 'salient_examples', type: 'INT32', data: pick(salience, 'salient_examples') },
    { name: 'mean_abs_attr', type: 'DOUBLE', data: pick(salience, 'mean_abs_attr') },
  ]);
  return { dir, summary, predictions, calibration, neurons, dead, correlation, agreement, salience };
}
