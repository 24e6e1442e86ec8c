/**
 * `precisions:` names → the ONNX file to run. fp32 is the model as given; quantized variants
 * come from prebuilt files in the folder or are quantized on first use into a cache
 * (sources/quantize/resolve.ts). The session config entries that stop ONNX Runtime from
 * re-quantizing activations are returned so they are set and recorded.
 */
import path from 'node:path';
import os from 'node:os';
import { QuantlensError } from '../sources/errors.ts';
import type { ModelFolder } from '../sources/model/folder.ts';
import type { PipelineConfig } from './schema.ts';

export async function resolvePrecisionModel(
  folder: ModelFolder,
  precision: string,
  cfg: PipelineConfig,
  nativePrecision: 'fp32' | 'fp16',
  cacheDir?: string,
): Promise<{ path: string; source: string; settings: Record<string, unknown>; sessionConfig: Record<string, string> }> {
  if (precision === nativePrecision) return { path: folder.onnxPath, source: 'original', settings: {}, sessionConfig: {} };
  if (precision === 'fp32' || precision === 'fp16') {
    const prebuilt = folder.variants[precision];
    if (prebuilt && prebuilt !== folder.onnxPath) return { path: prebuilt, source: 'prebuilt', settings: {}, sessionConfig: {} };
    throw new QuantlensError('UNSUPPORTED', `the model is ${nativePrecision} and has no ${precision} variant; list ${nativePrecision} in precisions`, 'precisions');
  }
  let quantize: typeof import('../sources/quantize/resolve.ts');
  try {
    quantize = await import('../sources/quantize/resolve.ts');
  } catch (e) {
    throw new QuantlensError('UNSUPPORTED', `precision ${precision} needs the quantizer, which failed to load (${(e as Error).message})`, 'precisions');
  }
  const q = cfg.quantization;
  const r = await quantize.resolvePrecision(folder.dir, folder.onnxPath, precision, cacheDir ?? defaultCacheDir(), {
    blockSize: q.block_size,
    doubleQuant: q.double_quant,
    symmetric: q.symmetric,
    outlierThreshold: q.outlier_threshold,
    includeLmHead: q.include_lm_head,
  });
  const { quantSessionConfig } = await import('../sources/quantize/session-settings.ts');
  return { ...r, sessionConfig: quantSessionConfig() };
}

/** Quantized variants are cached per user: QUANTLENS_CACHE, else ~/.cache/quantlens. */
export function defaultCacheDir(): string {
  return process.env.QUANTLENS_CACHE ?? path.join(os.homedir(), '.cache', 'quantlens');
}
