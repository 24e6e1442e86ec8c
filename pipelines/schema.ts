/**
 * The pipeline file: its keys, defaults and validation. Keys are a contract (extend, don't
 * rename). Validation reports the file, line and key of the first problem on one line.
 */
import type { LayerSpec } from '../onnx/capture.ts';

export const MEASURES = ['predictions', 'neurons', 'calibration', 'dead', 'correlation', 'agreement', 'salience', 'perplexity'] as const;
export type MeasureName = (typeof MEASURES)[number];

/**
 * When attribution runs: `during` the stream (per batch, beside the inference sessions), `after`
 * it (a pass of its own once the inference sessions are released), or `auto`: `during` when the
 * run fits the memory budget that way, else `after` (pipelines/budget.ts).
 */
export const SALIENCE_SCHEDULES = ['auto', 'during', 'after'] as const;
export type SalienceSchedule = (typeof SALIENCE_SCHEDULES)[number];

export const PRECISIONS = ['fp32', 'fp16', 'llm-int8', 'nf4', 'fp4', 'q4', 'int8', 'dynamic-int8'] as const;

export interface PipelineConfig {
  name: string;
  /** Absolute path of the YAML file ('' when built in code). */
  file: string;
  /** Absolute model folder, or 'demo' / 'demo:bench' for the built-in demo model. */
  model: string;
  /** Precision names, in order (the first is the reference). */
  precisions: string[];
  /** Precisions given as `{name, model}`: their own model (folder or .onnx file, absolute). */
  precision_models?: Record<string, string>;
  dataset: {
    path: string;
    format?: 'csv' | 'jsonl' | 'parquet';
    prompt: string;
    gold: string;
    skip?: number;
    limit?: number;
    shard?: { index: number; count: number };
    /** Which end of an over-long prompt is kept. */
    truncation: 'keep-end' | 'keep-start';
  };
  layers: LayerSpec[];
  batch: { max_tokens: number; max_examples: number; window: number };
  measure: MeasureName[];
  scoring: { mode: 'first-token' | 'choices' | 'loglik'; choices?: string[] };
  /** What predictions.parquet stores beyond the scores: `prompt` = the rendered prompt text. */
  predictions: { prompt: boolean };
  output: string;
  session: { intra_op_threads: number; graph_optimization_level: 'disabled' | 'basic' | 'extended' | 'all'; execution_providers: string[] };
  dead: { lo: number; hi: number };
  correlation: { threshold: number; top_k: number; memory_budget_gb: number; clusters: boolean; compute: 'float32' | 'float64' };
  calibration: { bins: number; bootstrap: number; seed: number };
  salience: { steps: number; threshold: number; normalise: 'abs' | 'signed'; baseline_token_id: number; target: 'top1' | 'gold'; limit?: number; adaptive: boolean; memory_budget_gb: number; schedule: SalienceSchedule; workers: number };
  agreement: { reference?: string };
  /** `measure: perplexity`: which next-token positions of each sequence are scored. */
  perplexity: { positions: 'all' | 'second-half' };
  quantization: { block_size?: number; double_quant?: boolean; symmetric?: boolean; outlier_threshold?: number; include_lm_head?: boolean; allow_partial: boolean };
  activations?: { format: 'arrow' | 'parquet'; every: number; limit?: number };
  checkpoint_every: number;
  /** The run's memory budget in GiB (pipelines/budget.ts); absent = 80 % of physical memory. */
  memory_budget_gb?: number;
}

/**
 * A field description used by the validator: type checks plus defaults. Numbers are always
 * finite; an int without `max` is capped at INT_CAP (ids, counts and rows are int32 downstream),
 * and keys that size work or memory (bootstrap, bins, steps, threads, batches) carry their own.
 */
export type Field =
  | { kind: 'string'; required?: boolean; default?: string; oneOf?: readonly string[] }
  | { kind: 'int'; required?: boolean; default?: number; min?: number; max?: number }
  | { kind: 'number'; required?: boolean; default?: number; min?: number; max?: number }
  | { kind: 'bool'; default?: boolean }
  | { kind: 'stringList'; required?: boolean; default?: string[]; oneOf?: readonly string[]; nonEmpty?: boolean }
  /** Names from `oneOf` or `model_<tag>` (a prebuilt file of the folder), or `{name, model}` mappings. */
  | { kind: 'precisionList'; default: string[]; oneOf: readonly string[] }
  | { kind: 'layers'; default: LayerSpec[] }
  | { kind: 'object'; fields: Record<string, Field>; required?: boolean; optional?: boolean };

/** The largest integer any key accepts unless its field says less. */
export const INT_CAP = 2 ** 31 - 1;

export const SCHEMA: Record<string, Field> = {
  name: { kind: 'string' },
  model: { kind: 'string', required: true },
  precisions: { kind: 'precisionList', default: ['fp32'], oneOf: PRECISIONS },
  dataset: {
    kind: 'object',
    required: true,
    fields: {
      path: { kind: 'string', required: true },
      format: { kind: 'string', oneOf: ['csv', 'jsonl', 'parquet'] },
      prompt: { kind: 'string', default: '{prompt}' },
      gold: { kind: 'string', default: 'gold' },
      skip: { kind: 'int', min: 0 },
      limit: { kind: 'int', min: 1 },
      shard: { kind: 'object', optional: true, fields: { index: { kind: 'int', required: true, min: 0 }, count: { kind: 'int', required: true, min: 1 } } },
      truncation: { kind: 'string', default: 'keep-end', oneOf: ['keep-end', 'keep-start'] },
    },
  },
  layers: { kind: 'layers', default: ['first', 'middle', 'last'] },
  batch: {
    kind: 'object',
    fields: {
      max_tokens: { kind: 'int', default: 4096, min: 1, max: 1 << 24 },
      max_examples: { kind: 'int', default: 64, min: 1, max: 4096 },
      window: { kind: 'int', default: 256, min: 1, max: 1 << 20 },
    },
  },
  measure: { kind: 'stringList', default: ['predictions', 'neurons'], oneOf: MEASURES, nonEmpty: true },
  scoring: {
    kind: 'object',
    fields: {
      mode: { kind: 'string', default: 'first-token', oneOf: ['first-token', 'choices', 'loglik'] },
      choices: { kind: 'stringList' },
    },
  },
  predictions: { kind: 'object', fields: { prompt: { kind: 'bool', default: false } } },
  output: { kind: 'string' },
  session: {
    kind: 'object',
    fields: {
      intra_op_threads: { kind: 'int', default: 0, min: 0, max: 1024 },
      graph_optimization_level: { kind: 'string', default: 'all', oneOf: ['disabled', 'basic', 'extended', 'all'] },
      execution_providers: { kind: 'stringList', default: ['cpu'], nonEmpty: true },
    },
  },
  dead: { kind: 'object', fields: { lo: { kind: 'number', default: -0.1, min: -1e6, max: 1e6 }, hi: { kind: 'number', default: 0.1, min: -1e6, max: 1e6 } } },
  correlation: {
    kind: 'object',
    fields: {
      threshold: { kind: 'number', default: 0.5, min: 0, max: 1 },
      top_k: { kind: 'int', default: 20, min: 0, max: 100_000 },
      memory_budget_gb: { kind: 'number', default: 4, min: 0, max: 1 << 20 },
      clusters: { kind: 'bool', default: true },
      compute: { kind: 'string', default: 'float32', oneOf: ['float32', 'float64'] },
    },
  },
  calibration: {
    kind: 'object',
    fields: {
      bins: { kind: 'int', default: 10, min: 1, max: 10_000 },
      bootstrap: { kind: 'int', default: 1000, min: 0, max: 100_000 },
      seed: { kind: 'int', default: 0, min: 0, max: 2 ** 32 - 1 },
    },
  },
  salience: {
    kind: 'object',
    fields: {
      steps: { kind: 'int', default: 50, min: 1, max: 1024 },
      threshold: { kind: 'number', default: 0.7, min: 0, max: 1 },
      normalise: { kind: 'string', default: 'abs', oneOf: ['abs', 'signed'] },
      baseline_token_id: { kind: 'int', default: 0, min: 0 },
      target: { kind: 'string', default: 'top1', oneOf: ['top1', 'gold'] },
      limit: { kind: 'int', min: 1 },
      adaptive: { kind: 'bool', default: false },
      memory_budget_gb: { kind: 'number', default: 0.02, min: 0, max: 1 << 20 },
      schedule: { kind: 'string', default: 'auto', oneOf: SALIENCE_SCHEDULES },
      /** Attribution worker sessions (operators/attribution/lig-parallel.ts); 0: by rule (autoAttributionWorkers, within the memory budget). */
      workers: { kind: 'int', default: 0, min: 0, max: 64 },
    },
  },
  agreement: { kind: 'object', fields: { reference: { kind: 'string' } } },
  perplexity: { kind: 'object', fields: { positions: { kind: 'string', default: 'all', oneOf: ['all', 'second-half'] } } },
  quantization: {
    kind: 'object',
    fields: {
      block_size: { kind: 'int', min: 16, max: 256 },
      double_quant: { kind: 'bool' },
      symmetric: { kind: 'bool' },
      outlier_threshold: { kind: 'number', min: 0, max: 1e6 },
      include_lm_head: { kind: 'bool' },
      /** Accept a precision that leaves some decoder linear weights in float (default: refused). */
      allow_partial: { kind: 'bool', default: false },
    },
  },
  activations: {
    kind: 'object',
    optional: true,
    fields: {
      format: { kind: 'string', default: 'arrow', oneOf: ['arrow', 'parquet'] },
      every: { kind: 'int', default: 1, min: 1 },
      limit: { kind: 'int', min: 1 },
    },
  },
  checkpoint_every: { kind: 'int', default: 50, min: 1 },
  memory_budget_gb: { kind: 'number', min: 0, max: 1 << 20 },
};

/**
 * Rules across keys, checked after every key on its own is valid. `at` is the key reported
 * (file:line of that key, or of its parent mapping when the key was left at its default);
 * `check` returns the message, or null when the rule holds. A new rule is one entry.
 */
export interface CrossFieldRule {
  at: string;
  check(cfg: PipelineConfig): string | null;
}

export const RULES: CrossFieldRule[] = [
  { at: 'dataset.shard.index', check: (c) => (c.dataset.shard && c.dataset.shard.index >= c.dataset.shard.count ? `must be < shard.count (${c.dataset.shard.count})` : null) },
  { at: 'dead.lo', check: (c) => (c.dead.lo < c.dead.hi ? null : `must be < dead.hi (${c.dead.hi}), got ${c.dead.lo}`) },
  { at: 'scoring.choices', check: (c) => (c.scoring.mode !== 'first-token' && !c.scoring.choices?.length ? `is required when scoring.mode is ${c.scoring.mode}` : null) },
  { at: 'measure', check: (c) => (c.measure.includes('agreement') && c.precisions.length < 2 ? 'agreement needs at least two precisions' : null) },
  {
    at: 'agreement.reference',
    check: (c) => (c.agreement.reference !== undefined && !c.precisions.includes(c.agreement.reference) ? `"${c.agreement.reference}" is not one of the precisions (${c.precisions.join(', ')})` : null),
  },
];

/** Pipeline files are small; anything larger is refused before it is parsed. */
export const MAX_PIPELINE_BYTES = 1 << 20;
