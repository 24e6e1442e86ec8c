/**
 * The pipeline file: its keys, defaults and validation. Keys are a contract (extend, don't
 * rename). Validation reports the file, line and key of the first problem on one line.
 */
import type { LayerSpec } from '../onnx/capture.ts';

export const MEASURES = ['predictions', 'neurons', 'calibration', 'dead', 'correlation', 'agreement', 'salience'] as const;
export type MeasureName = (typeof MEASURES)[number];

export const PRECISIONS = ['fp32', 'fp16', 'llm-int8', 'nf4', 'fp4', 'q4', 'int8', 'dynamic-int8'] as const;

export interface PipelineConfig {
  name: string;
  /** Absolute path of the YAML file ('' when built in code). */
  file: string;
  /** Absolute model folder, or 'demo' / 'demo:bench' for the built-in demo model. */
  model: string;
  precisions: string[];
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
  salience: { steps: number; threshold: number; normalise: 'abs' | 'signed'; baseline_token_id: number; target: 'top1' | 'gold'; limit?: number; adaptive: boolean; memory_budget_gb: number };
  agreement: { reference?: string };
  quantization: { block_size?: number; double_quant?: boolean; symmetric?: boolean; outlier_threshold?: number; include_lm_head?: boolean };
  activations?: { format: 'arrow' | 'parquet'; every: number; limit?: number };
  checkpoint_every: number;
}

/** A field description used by the validator: type checks plus defaults. */
type Field =
  | { kind: 'string'; required?: boolean; default?: string; oneOf?: readonly string[] }
  | { kind: 'int'; required?: boolean; default?: number; min?: number; max?: number }
  | { kind: 'number'; required?: boolean; default?: number; min?: number; max?: number }
  | { kind: 'bool'; default?: boolean }
  | { kind: 'stringList'; required?: boolean; default?: string[]; oneOf?: readonly string[]; nonEmpty?: boolean }
  | { kind: 'layers'; default: LayerSpec[] }
  | { kind: 'object'; fields: Record<string, Field>; required?: boolean; optional?: boolean };

export const SCHEMA: Record<string, Field> = {
  name: { kind: 'string' },
  model: { kind: 'string', required: true },
  precisions: { kind: 'stringList', default: ['fp32'], oneOf: PRECISIONS, nonEmpty: true },
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
      max_tokens: { kind: 'int', default: 4096, min: 1 },
      max_examples: { kind: 'int', default: 64, min: 1 },
      window: { kind: 'int', default: 256, min: 1 },
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
      intra_op_threads: { kind: 'int', default: 0, min: 0 },
      graph_optimization_level: { kind: 'string', default: 'all', oneOf: ['disabled', 'basic', 'extended', 'all'] },
      execution_providers: { kind: 'stringList', default: ['cpu'], nonEmpty: true },
    },
  },
  dead: { kind: 'object', fields: { lo: { kind: 'number', default: -0.1 }, hi: { kind: 'number', default: 0.1 } } },
  correlation: {
    kind: 'object',
    fields: {
      threshold: { kind: 'number', default: 0.5, min: 0, max: 1 },
      top_k: { kind: 'int', default: 20, min: 0 },
      memory_budget_gb: { kind: 'number', default: 4, min: 0 },
      clusters: { kind: 'bool', default: true },
      compute: { kind: 'string', default: 'float32', oneOf: ['float32', 'float64'] },
    },
  },
  calibration: {
    kind: 'object',
    fields: {
      bins: { kind: 'int', default: 10, min: 1 },
      bootstrap: { kind: 'int', default: 1000, min: 0 },
      seed: { kind: 'int', default: 0, min: 0 },
    },
  },
  salience: {
    kind: 'object',
    fields: {
      steps: { kind: 'int', default: 50, min: 1 },
      threshold: { kind: 'number', default: 0.7, min: 0, max: 1 },
      normalise: { kind: 'string', default: 'abs', oneOf: ['abs', 'signed'] },
      baseline_token_id: { kind: 'int', default: 0, min: 0 },
      target: { kind: 'string', default: 'top1', oneOf: ['top1', 'gold'] },
      limit: { kind: 'int', min: 1 },
      adaptive: { kind: 'bool', default: false },
      memory_budget_gb: { kind: 'number', default: 0.02, min: 0 },
    },
  },
  agreement: { kind: 'object', fields: { reference: { kind: 'string' } } },
  quantization: {
    kind: 'object',
    fields: {
      block_size: { kind: 'int', min: 16, max: 256 },
      double_quant: { kind: 'bool' },
      symmetric: { kind: 'bool' },
      outlier_threshold: { kind: 'number', min: 0 },
      include_lm_head: { kind: 'bool' },
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
};
