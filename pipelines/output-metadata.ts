/**
 * What output files record about their inputs. Paths are relative to the output folder (POSIX
 * separators), so a run folder can be moved, shared or published without leaking local paths;
 * the model is also named and hashed. Quantized variants from the cache record their settings and
 * cache key but never the cache path (it is local to one machine and says nothing the key does not).
 */
import path from 'node:path';
import type { PipelineConfig } from './schema.ts';

/** A resolved precision (plan.ts PrecisionInfo; declared here so plan.ts can import this file). */
interface PrecisionInfo {
  precision: string;
  path: string;
  source: string;
  settings: Record<string, unknown>;
}

/** `p` relative to the output folder, with '/' separators. */
export function relativeToOutput(outDir: string, p: string): string {
  const rel = path.relative(path.resolve(outDir), path.resolve(p));
  return (rel === '' ? '.' : rel).split(path.sep).join('/');
}

export interface ModelRecord {
  /** The model folder relative to the output folder, or `demo` / `demo:bench`. */
  path: string;
  name: string;
  hash: string;
}

export function modelRecord(cfg: PipelineConfig, modelDir: string, hash: string, demo: boolean): ModelRecord {
  if (demo) return { path: cfg.model, name: cfg.model, hash };
  return { path: relativeToOutput(cfg.output, modelDir), name: path.basename(path.resolve(modelDir)), hash };
}

/** A precision's ONNX file as outputs record it: relative for the model's own files, absent for the cache. */
export function precisionPath(cfg: PipelineConfig, p: Pick<PrecisionInfo, 'path' | 'source'>, demo: boolean): string | undefined {
  if (p.source === 'cache' || p.source === 'quantized') return undefined;
  return demo ? `${cfg.model}/${path.basename(p.path)}` : relativeToOutput(cfg.output, p.path);
}

export function datasetPath(cfg: PipelineConfig, resolved: string): string {
  return cfg.dataset.path === 'demo' ? 'demo' : relativeToOutput(cfg.output, resolved);
}

/** Key-value metadata of every output file (Parquet key-value, Arrow schema metadata). */
export function outputMetadata(
  cfg: PipelineConfig,
  model: ModelRecord,
  dataset: string,
  precisions: PrecisionInfo[],
  demo: boolean,
): Record<string, string> {
  const pipeline = { ...cfg, file: undefined, model: model.path, output: '.', dataset: { ...cfg.dataset, path: dataset } };
  return {
    'quantlens.pipeline': JSON.stringify(pipeline),
    'quantlens.model': model.path,
    'quantlens.model_name': model.name,
    'quantlens.model_hash': model.hash,
    'quantlens.precisions': JSON.stringify(precisions.map((p) => ({ precision: p.precision, path: precisionPath(cfg, p, demo), source: p.source, settings: p.settings }))),
  };
}
