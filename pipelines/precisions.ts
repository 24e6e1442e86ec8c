/**
 * `precisions:` entries → the ONNX file to run. fp32 is the model as given; quantized variants
 * come from prebuilt files in the folder or are quantized on first use into a cache
 * (sources/model/precision-files.ts). `model_<tag>` names a prebuilt file of the folder
 * (transformers.js `onnx/model_q4.onnx`, `model_bnb4`, `model_int8`, `model_uint8`, `model_fp16`, …)
 * used as it is, and `{name, model}` gives a precision its own model (folder or .onnx): both are
 * recorded with the settings read from their graphs, and a model whose tokenizer or vocabulary
 * differs from the pipeline's model is refused. The session settings that keep ORT from
 * re-quantizing activations are set for every precision in plan.ts.
 */
import path from 'node:path';
import os from 'node:os';
import { existsSync, statSync } from 'node:fs';
import { QuantlensError } from '../core/errors.ts';
import { openModelFolder, type ModelFolder } from '../sources/model/folder.ts';
import { checkSameTokenizer } from '../sources/model/same-tokenizer.ts';
import type { PipelineConfig } from './schema.ts';
import { graphSettings, resolveFilePrecision, resolvePrecision } from '../sources/model/precision-files.ts';
import { Progress } from './progress.ts';

type Resolved = { path: string; source: string; settings: Record<string, unknown> };

export async function resolvePrecisionModel(
  folder: ModelFolder,
  precision: string,
  cfg: PipelineConfig,
  nativePrecision: 'fp32' | 'fp16',
  cacheDir?: string,
): Promise<Resolved> {
  const q = cfg.quantization;
  const own = cfg.precision_models?.[precision];
  if (own) return ownModel(folder, precision, own, q.allow_partial);
  if (precision === nativePrecision) return { path: folder.onnxPath, source: 'original', settings: prequantizedOriginal(folder.onnxPath) };
  if (precision === 'fp32' || precision === 'fp16') {
    const prebuilt = folder.variants[precision];
    if (prebuilt && prebuilt !== folder.onnxPath) return resolveFilePrecision(folder.dir, prebuilt, precision, { allowPartial: q.allow_partial });
    throw new QuantlensError('UNSUPPORTED', `the model is ${nativePrecision} and has no ${precision} variant; list ${nativePrecision} in precisions`, 'precisions');
  }
  const tag = /^model_(\w+)$/.exec(precision)?.[1];
  if (tag) {
    const file = folder.variants[tag];
    if (!file) {
      const have = Object.keys(folder.variants).filter((t) => t !== 'fp32').map((t) => `model_${t}`);
      throw new QuantlensError('CONFIG', `precision ${precision}: the model folder has no ${precision}.onnx (prebuilt: ${have.join(', ') || 'none'})`, 'precisions');
    }
    return resolveFilePrecision(folder.dir, file, precision, { allowPartial: q.allow_partial });
  }
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
      allowPartial: q.allow_partial,
      onProgress: (done, total) => progress.update(done, total),
    });
    source = r.source;
    // A cache hit is the same file an uninterrupted run quantized: metadata must not depend on cache state.
    return { ...r, source: r.source === 'cache' ? 'quantized' : r.source };
  } finally {
    progress.done({ erase: source !== 'quantized' });
  }
}

/** `{name, model}`: a folder (its base model) or an .onnx file, with the same tokenizer and vocabulary. */
async function ownModel(folder: ModelFolder, precision: string, model: string, allowPartial: boolean): Promise<Resolved> {
  const where = `precisions: ${precision}`;
  if (!existsSync(model)) throw new QuantlensError('CONFIG', `model not found: ${model}`, where);
  const other = statSync(model).isDirectory() ? await openModelFolder(model, where) : await openModelFolder(path.dirname(model), where);
  const file = statSync(model).isDirectory() ? other.onnxPath : model;
  const tokenizerNote = await checkSameTokenizer(folder, other, where);
  const r = resolveFilePrecision(other.dir, file, precision, { allowPartial });
  return { ...r, source: 'model-path', settings: { ...r.settings, prebuilt: undefined, model: file, ...(tokenizerNote ? { tokenizer: tokenizerNote } : {}) } };
}

/** The model as given records what it holds when its weights are quantized already (e.g. an int4 build run as `fp32`). */
function prequantizedOriginal(file: string): Record<string, unknown> {
  const g = graphSettings(file, true);
  return (g.formats as unknown[]).length ? { note: 'the model as given holds quantized weights', ...g } : {};
}

/** Quantized variants are cached per user: QUANTLENS_CACHE, else ~/.cache/quantlens. */
export function defaultCacheDir(): string {
  return process.env.QUANTLENS_CACHE ?? path.join(os.homedir(), '.cache', 'quantlens');
}
