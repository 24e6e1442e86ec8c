/**
 * A model folder as people download it: Hugging Face / Optimum / transformers.js / onnxruntime-genai
 * layouts. Resolution is by file names only; the ONNX proto reader confirms details later.
 *
 *   <dir>/config.json, tokenizer.json, tokenizer_config.json, genai_config.json (any may be absent)
 *   <dir>/model.onnx  or  <dir>/onnx/model.onnx          (base model, key 'fp32')
 *   <dir>/onnx/model_<tag>.onnx                          (transformers.js variants: fp16, q4, q4f16,
 *                                                         bnb4, int8, uint8, quantized)
 *   decoder_model_merged / decoder_model base names      (older Optimum exports)
 *   otherwise a single *.onnx of any name                (e.g. genai's past.onnx)
 * External data: `<name>.onnx.data` or `<name>.onnx_data` beside the .onnx file.
 */
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';

export interface ModelFolder {
  dir: string;
  config: Record<string, any> | null;
  /** onnxruntime-genai's genai_config.json (model.decoder holds layer count, heads, input names). */
  genai: Record<string, any> | null;
  /** The base model (variants.fp32 when present). */
  onnxPath: string;
  /** Precision / file tag → path. 'fp32' is the untagged base file (transformers.js naming; the
   *  graph's real dtype may differ, e.g. tiny-random-llama-fp16's model.onnx is fp16). */
  variants: Record<string, string>;
  /** External data files that sit beside onnxPath (may be empty). */
  externalData: string[];
  maxContext: number | null;
  vocabSize: number | null;
  tokenizerDir: string;
}

export const VARIANT_TAGS = ['fp16', 'q4', 'q4f16', 'bnb4', 'int8', 'uint8', 'quantized'] as const;
/** Base names in preference order (modern single-file export first). */
const BASE_NAMES = ['model', 'decoder_model_merged', 'decoder_model'];
/** transformers' "no limit" model_max_length is 1e30; anything this large is not a real context. */
const ABSURD_CONTEXT = 1e8;

/**
 * Every file a model folder names (ONNX files, external data, config and tokenizer files) must
 * lie inside the folder once symlinks are resolved, so a downloaded folder cannot make quantlens
 * read files elsewhere on the machine.
 */
export function checkInsideFolder(dir: string, file: string, where?: string): void {
  if (!existsSync(file)) return;
  const rel = path.relative(realpathSync(dir), realpathSync(file));
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel))
    throw new QuantlensError('MODEL', `${path.relative(dir, file)} is a symlink that leaves the model folder ${dir}`, where ?? file);
}

function readJsonIfPresent(file: string, where: string): Record<string, any> | null {
  if (!existsSync(file)) return null;
  checkInsideFolder(path.dirname(file), file, where);
  try {
    const v = JSON.parse(readFileSync(file, 'utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch (e) {
    throw new QuantlensError('MODEL', `malformed JSON in ${file}: ${(e as Error).message}`, where, { cause: e });
  }
}

function onnxFilesIn(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.onnx') && statSync(path.join(dir, n)).isFile())
    .sort()
    .map((n) => path.join(dir, n));
}

/** Files beside an .onnx that carry its external initializers. */
export function externalDataBeside(onnxPath: string): string[] {
  return [`${onnxPath}.data`, `${onnxPath}_data`].filter((p) => existsSync(p));
}

function positiveInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 && v < ABSURD_CONTEXT ? Math.floor(v) : null;
}

export async function openModelFolder(dir: string, where?: string): Promise<ModelFolder> {
  const at = where ?? dir;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new QuantlensError('MODEL', `model folder not found: ${dir}`, where);
  }
  const config = readJsonIfPresent(path.join(dir, 'config.json'), at);
  const genai = readJsonIfPresent(path.join(dir, 'genai_config.json'), at);
  const tokConfig = readJsonIfPresent(path.join(dir, 'tokenizer_config.json'), at);

  // Root files win over onnx/ files of the same name (Optimum puts model.onnx at the root).
  const files = [...onnxFilesIn(dir), ...onnxFilesIn(path.join(dir, 'onnx'))];
  if (files.length === 0) throw new QuantlensError('MODEL', `no .onnx file in ${dir} or ${path.join(dir, 'onnx')}`, where);

  const variants: Record<string, string> = {};
  let base: string | undefined;
  for (const baseName of BASE_NAMES) {
    const matching = files.filter((f) => {
      const stem = path.basename(f, '.onnx');
      return stem === baseName || VARIANT_TAGS.some((t) => stem === `${baseName}_${t}`);
    });
    if (matching.length === 0) continue;
    for (const f of matching) {
      const stem = path.basename(f, '.onnx');
      const tag = stem === baseName ? 'fp32' : stem.slice(baseName.length + 1);
      variants[tag] ??= f;
    }
    base = variants.fp32 ?? matching[0];
    break;
  }
  if (base === undefined) {
    if (files.length > 1) {
      const names = files.map((f) => path.relative(dir, f)).join(', ');
      throw new QuantlensError('MODEL', `cannot tell which .onnx is the model among ${names} (expected model.onnx)`, where);
    }
    base = files[0];
    variants.fp32 = base;
  }

  const genaiModel = genai?.model ?? {};
  const contexts = [
    positiveInt(config?.max_position_embeddings),
    positiveInt(config?.n_positions),
    positiveInt(genai?.search?.max_length),
    positiveInt(genaiModel.context_length),
    positiveInt(tokConfig?.model_max_length),
  ].filter((v): v is number => v !== null);
  const maxContext = contexts.length ? Math.min(...contexts) : null;

  // config.json's vocab_size; genai-style exports keep it under model.vocab_size instead.
  const vocabSize = positiveInt(config?.vocab_size) ?? positiveInt(config?.model?.vocab_size) ?? positiveInt(genaiModel.vocab_size);

  const tokenizerDir = [dir, path.dirname(base)].find((d) => existsSync(path.join(d, 'tokenizer.json'))) ?? dir;
  const named = [...Object.values(variants), ...externalDataBeside(base), path.join(tokenizerDir, 'tokenizer.json'), path.join(tokenizerDir, 'tokenizer_config.json')];
  for (const f of named) checkInsideFolder(dir, f, where);

  return { dir, config, genai, onnxPath: base, variants, externalData: externalDataBeside(base), maxContext, vocabSize, tokenizerDir };
}
