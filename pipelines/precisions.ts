/**
 * `precisions:` names → the ONNX file to run. fp32 is the model as given; quantized variants
 * come from prebuilt files in the folder or are quantized on first use into a cache
 * (sources/model/precision-files.ts). The session settings that keep ORT from re-quantizing
 * activations are set for every precision in plan.ts.
 */
import path from 'node:path';
import os from 'node:os';
import { QuantlensError } from '../core/errors.ts';
import type { ModelFolder } from '../sources/model/folder.ts';
import type { PipelineConfig } from './schema.ts';
import { resolvePrecision } from '../sources/model/precision-files.ts';
import { Progress } from './progress.ts';

export async function resolvePrecisionModel(
  folder: ModelFolder,
  precision: string,
  cfg: PipelineConfig,
  nativePrecision: 'fp32' | 'fp16',
  cacheDir?: string,
): Promise<{ path: string; source: string; settings: Record<string, unknown> }> {
  if (precision === nativePrecision) return { path: folder.onnxPath, source: 'original', settings: {} };
  if (precision === 'fp32' || precision === 'fp16') {
    const prebuilt = folder.variants[precision];
    if (prebuilt && prebuilt !== folder.onnxPath) return { path: prebuilt, source: 'prebuilt', settings: {} };
    throw new QuantlensError('UNSUPPORTED', `the model is ${nativePrecision} and has no ${precision} variant; list ${nativePrecision} in precisions`, 'precisions');
  }
  const q = cfg.quantization;
  // Quantizing a large model takes minutes: say so at once (erased again for a cache hit).
  const progress = new Progress(null, { phase: `quantization ${precision}`, unit: 'weights', ttyOnly: true });
  let source = '';
  try {
    const r = await resolvePrecision(folder.dir, folder.onnxPath, precision, cacheDir ?? defaultCacheDir(), {
      blockSize: q.block_size,
      doubleQuant: q.double_quant,
      symmetric: q.symmetric,
      outlierThreshold: q.outlier_threshold,
      includeLmHead: q.include_lm_head,
      onProgress: (done, total) => progress.update(done, total),
    });
    source = r.source;
    return r;
  } finally {
    progress.done({ erase: source !== 'quantized' });
  }
}

/** Quantized variants are cached per user: QUANTLENS_CACHE, else ~/.cache/quantlens. */
export function defaultCacheDir(): string {
  return process.env.QUANTLENS_CACHE ?? path.join(os.homedir(), '.cache', 'quantlens');
}
