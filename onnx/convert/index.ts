/**
 * One entry point for checkpoint conversion: detects what `src` is and writes a model folder.
 *   - a llama2.c .bin file (tokenizer: opts.tokenizer, else tokenizer.bin / tok*.bin beside it)
 *   - a folder holding one llama2.c .bin and its tokenizer file
 *   - a Hugging Face folder with config.json and *.safetensors (Llama, Mistral, Qwen2)
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import { convertLlama2c } from './llama2c.ts';
import { convertSafetensors } from './safetensors.ts';

export interface ConvertResult {
  kind: 'llama2c' | 'safetensors';
  outDir: string;
}

const isTokenizerBin = (name: string) => name === 'tokenizer.bin' || /^tok.*\.bin$/.test(name);

function findLlama2cTokenizer(binPath: string): string {
  const dir = path.dirname(binPath);
  const candidates = readdirSync(dir).filter((n) => isTokenizerBin(n) && path.join(dir, n) !== binPath);
  if (candidates.length === 1) return path.join(dir, candidates[0]);
  throw new QuantlensError(
    'CONVERT',
    candidates.length === 0
      ? `no llama2.c tokenizer (tokenizer.bin or tok*.bin) beside the checkpoint; pass it explicitly`
      : `several tokenizer files beside the checkpoint (${candidates.join(', ')}); pass one explicitly`,
    binPath,
  );
}

export async function convertCheckpoint(src: string, outDir: string, opts: { tokenizer?: string } = {}): Promise<ConvertResult> {
  if (!existsSync(src)) throw new QuantlensError('CONVERT', `checkpoint not found`, src);
  if (path.resolve(src) === path.resolve(outDir)) throw new QuantlensError('CONVERT', `output folder must differ from the checkpoint`, outDir);
  if (statSync(src).isFile()) {
    if (!src.endsWith('.bin')) throw new QuantlensError('CONVERT', `expected a llama2.c .bin file or a folder with *.safetensors`, src);
    const tok = opts.tokenizer ?? findLlama2cTokenizer(src);
    if (!existsSync(tok)) throw new QuantlensError('CONVERT', `tokenizer file not found`, tok);
    return { kind: 'llama2c', outDir: await convertLlama2c(src, tok, outDir) };
  }
  const names = readdirSync(src);
  if (names.some((n) => n.endsWith('.safetensors'))) return { kind: 'safetensors', outDir: await convertSafetensors(src, outDir) };
  if (names.includes('pytorch_model.bin') || names.some((n) => /^pytorch_model-.*\.bin$/.test(n))) {
    throw new QuantlensError('UNSUPPORTED', `PyTorch pickle checkpoints (pytorch_model*.bin) are not supported; save the model as safetensors first`, src);
  }
  const bins = names.filter((n) => n.endsWith('.bin') && !isTokenizerBin(n));
  if (bins.length === 1) {
    const bin = path.join(src, bins[0]);
    return { kind: 'llama2c', outDir: await convertLlama2c(bin, opts.tokenizer ?? findLlama2cTokenizer(bin), outDir) };
  }
  throw new QuantlensError(
    'CONVERT',
    bins.length > 1 ? `several .bin checkpoints (${bins.join(', ')}); pass the file itself` : `no *.safetensors or llama2.c .bin checkpoint in the folder`,
    src,
  );
}
