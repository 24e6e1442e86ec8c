/**
 * Hugging Face Llama / Mistral / Qwen2 checkpoints (config.json + *.safetensors, single file or
 * sharded with model.safetensors.index.json; F32 / F16 / BF16) → a model folder with model.onnx.
 *
 * safetensors layout: uint64 LE header length N, N bytes of JSON
 * { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__ }, then the tensor bytes
 * (offsets relative to the end of the header). Tensors are read one at a time with positional reads,
 * when the graph builder reaches them; above the inline limit each is written to model.onnx.data
 * before the next is read, so peak memory is about one tensor (and its transpose), not the model.
 *
 * HF checkpoints permute q/k rows for rotate_half RoPE, so the graph is built with the 'half'
 * layout and the weights are used as stored.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import { bfloat16ToFloat, halfToFloat } from '../dtypes.ts';
import { llamaConfigFromHf, type LlamaConfig } from '../models/llama-config.ts';
import { writeModelFolder, type AnyLlamaWeights, type LlamaLayerWeightsOf, type TransposingLoader, type Weight } from '../models/llama-graph.ts';
import { transposeMatrix } from '../matrix.ts';
import { readFully } from '../model-reader.ts';

export interface SafetensorsEntry {
  file: string;
  dtype: string;
  shape: number[];
  /** Absolute byte range in `file`. */
  begin: number;
  end: number;
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

function readExactly(fd: number, length: number, position: number, file: string): Buffer {
  const out = Buffer.allocUnsafe(length);
  const got = readFully(fd, out, position);
  if (got < length) throw new QuantlensError('CONVERT', `unexpected end of file at byte ${position + got}`, file);
  return out;
}

/** The tensor table of one .safetensors file. */
export function readSafetensorsHeader(file: string): Map<string, SafetensorsEntry> {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    if (size < 8) throw new QuantlensError('CONVERT', `not a safetensors file (${size} bytes)`, file);
    const n = Number(readExactly(fd, 8, 0, file).readBigUInt64LE(0));
    if (n <= 0 || 8 + n > size) throw new QuantlensError('CONVERT', `not a safetensors file (header length ${n})`, file);
    let header: Record<string, any>;
    try {
      header = JSON.parse(readExactly(fd, n, 8, file).toString('utf8'));
    } catch (e) {
      throw new QuantlensError('CONVERT', `safetensors header is not JSON: ${(e as Error).message}`, file, { cause: e });
    }
    const out = new Map<string, SafetensorsEntry>();
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const [b, e] = info.data_offsets as [number, number];
      const entry = { file, dtype: String(info.dtype), shape: info.shape as number[], begin: 8 + n + b, end: 8 + n + e };
      if (entry.end > size) throw new QuantlensError('CONVERT', `tensor ${name} runs past the end of the file`, file);
      out.set(name, entry);
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/**
 * Buffers reused from one tensor to the next: the raw bytes and the float32 values. A fresh 100 MB
 * array per tensor costs more in page faults than widening it, so the linear weights of a
 * conversion (which the graph builder copies, transposing, before it asks for the next) share these.
 */
export class TensorBuffers {
  private bytes = new Uint8Array(0);
  private floats = new Float32Array(0);
  bytesFor(n: number): Uint8Array {
    if (this.bytes.length < n) this.bytes = new Uint8Array(n);
    return this.bytes.subarray(0, n);
  }
  floatsFor(n: number): Float32Array {
    if (this.floats.length < n) this.floats = new Float32Array(n);
    return this.floats.subarray(0, n);
  }
}

function readInto(e: SafetensorsEntry, out: Uint8Array): void {
  const fd = openSync(e.file, 'r');
  try {
    const got = readFully(fd, out, e.begin);
    if (got < out.length) throw new QuantlensError('CONVERT', `unexpected end of file at byte ${e.begin + got}`, e.file);
  } finally {
    closeSync(fd);
  }
}

/**
 * One tensor as float32 (F32 / F16 / BF16 / F64 → f32). With `reuse`, the result is a view of
 * its buffers, valid until the next tensor read with them.
 */
export function readSafetensorsFloat32(name: string, e: SafetensorsEntry, reuse?: TensorBuffers): Float32Array {
  const per = BYTES[e.dtype];
  if (!per) throw new QuantlensError('UNSUPPORTED', `tensor ${name} has dtype ${e.dtype}; F32, F16, BF16 and F64 are supported`, e.file);
  const numel = e.shape.reduce((a, b) => a * b, 1);
  if (numel * per !== e.end - e.begin) throw new QuantlensError('CONVERT', `tensor ${name} shape [${e.shape}] does not match its ${e.end - e.begin} bytes`, e.file);
  const buffers = reuse ?? new TensorBuffers();
  const out = buffers.floatsFor(numel);
  if (e.dtype === 'F32') {
    readInto(e, new Uint8Array(out.buffer, out.byteOffset, 4 * numel));
    return out;
  }
  // A buffer of its own (never a pooled slice), so it is aligned for the typed views below.
  const bytes = buffers.bytesFor(numel * per);
  readInto(e, bytes);
  if (e.dtype === 'F64') {
    out.set(new Float64Array(bytes.buffer, 0, numel));
    return out;
  }
  const u16 = new Uint16Array(bytes.buffer, 0, numel);
  if (e.dtype === 'F16') return halfToFloat(u16, out);
  return bfloat16ToFloat(u16, out);
}

/**
 * W [rows, cols] of a tensor written transposed into `out` ([cols, rows]). A BF16 tensor is widened
 * inside the tiled transpose (one pass over the weight, no float32 copy of it); other dtypes are
 * read with `reuse` then transposed.
 */
export function readSafetensorsTransposed(name: string, e: SafetensorsEntry, out: Float32Array, reuse: TensorBuffers): void {
  const [rows, cols] = e.shape;
  if (e.shape.length !== 2 || out.length !== rows * cols) throw new QuantlensError('CONVERT', `tensor ${name} [${e.shape}] cannot be transposed into ${out.length} values`, e.file);
  if (e.dtype !== 'BF16' || 2 * rows * cols !== e.end - e.begin) {
    transposeMatrix(readSafetensorsFloat32(name, e, reuse), rows, cols, out);
    return;
  }
  const bytes = reuse.bytesFor(2 * rows * cols);
  readInto(e, bytes);
  const h = new Uint16Array(bytes.buffer, 0, rows * cols);
  const bits = new Uint32Array(out.buffer, out.byteOffset, rows * cols);
  const B = 64; // as transposeMatrix: a tile's reads and strided writes stay in cache
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) bits[c * rows + r] = h[row + c] << 16;
      }
    }
  }
}

/** name → entry over every shard of a checkpoint folder. */
export function indexSafetensorsFolder(dir: string): Map<string, SafetensorsEntry> {
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(indexFile)) {
    let index: any;
    try {
      index = JSON.parse(readFileSync(indexFile, 'utf8'));
    } catch (e) {
      throw new QuantlensError('CONVERT', `malformed JSON: ${(e as Error).message}`, indexFile, { cause: e });
    }
    if (!index?.weight_map || typeof index.weight_map !== 'object') throw new QuantlensError('CONVERT', `no "weight_map"`, indexFile);
    files = [...new Set(Object.values(index.weight_map as Record<string, string>))].map((f) => path.join(dir, f));
    for (const f of files) if (!existsSync(f)) throw new QuantlensError('CONVERT', `shard ${path.basename(f)} listed in the index is missing`, indexFile);
  } else {
    files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().map((f) => path.join(dir, f));
  }
  if (files.length === 0) throw new QuantlensError('CONVERT', `no *.safetensors files`, dir);
  const all = new Map<string, SafetensorsEntry>();
  for (const f of files) for (const [k, v] of readSafetensorsHeader(f)) all.set(k, v);
  return all;
}

function readJsonFile(file: string): Record<string, any> {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new QuantlensError('CONVERT', `cannot read JSON: ${(e as Error).message}`, file, { cause: e });
  }
}

/**
 * An HF Llama-family checkpoint folder as weight loaders: shapes are checked against config.json
 * now, bytes are read (and widened to float32) only when the graph builder asks for a tensor, so
 * conversion holds one tensor at a time.
 */
export function readSafetensorsCheckpoint(dir: string): { config: LlamaConfig; weights: AnyLlamaWeights } {
  const configFile = path.join(dir, 'config.json');
  if (!existsSync(configFile)) throw new QuantlensError('CONVERT', `config.json is missing`, dir);
  const json = readJsonFile(configFile);
  if (typeof json.model_type === 'string' && json.model_type.startsWith('phi')) {
    throw new QuantlensError('UNSUPPORTED', `Phi checkpoints (model_type "${json.model_type}") are not supported by the converter yet`, configFile);
  }
  const config = llamaConfigFromHf(json, configFile);
  const entries = indexSafetensorsFolder(dir);
  const H = config.hiddenSize;
  // Linear weights share one set of buffers (TensorBuffers); norms, biases and the embedding
  // (kept by the builder, or used twice when tied) are read into arrays of their own.
  const shared = new TensorBuffers();
  const get = (name: string, dims: number[], optional = false, reuse?: TensorBuffers): Weight | undefined => {
    const e = entries.get(name);
    if (!e) {
      if (optional) return undefined;
      throw new QuantlensError('CONVERT', `tensor ${name} is missing from the checkpoint`, dir);
    }
    if (e.shape.length !== dims.length || e.shape.some((d, i) => d !== dims[i])) {
      throw new QuantlensError('CONVERT', `tensor ${name} has shape [${e.shape}], config.json implies [${dims}]`, e.file);
    }
    const load: TransposingLoader = () => readSafetensorsFloat32(name, e, reuse);
    if (reuse) load.transposedInto = (out) => readSafetensorsTransposed(name, e, out, reuse);
    return load;
  };
  const need = (name: string, dims: number[]) => get(name, dims)!;
  const linear = (name: string, dims: number[]) => get(name, dims, false, shared)!;
  const qDim = config.numHeads * config.headDim;
  const kvDim = config.numKvHeads * config.headDim;
  const F = config.intermediateSize;
  const layers: LlamaLayerWeightsOf<Weight>[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    layers.push({
      inputNorm: need(`${p}.input_layernorm.weight`, [H]),
      q: linear(`${p}.self_attn.q_proj.weight`, [qDim, H]),
      k: linear(`${p}.self_attn.k_proj.weight`, [kvDim, H]),
      v: linear(`${p}.self_attn.v_proj.weight`, [kvDim, H]),
      o: linear(`${p}.self_attn.o_proj.weight`, [H, qDim]),
      qBias: config.attentionBias ? need(`${p}.self_attn.q_proj.bias`, [qDim]) : undefined,
      kBias: config.attentionBias ? need(`${p}.self_attn.k_proj.bias`, [kvDim]) : undefined,
      vBias: config.attentionBias ? need(`${p}.self_attn.v_proj.bias`, [kvDim]) : undefined,
      postNorm: need(`${p}.post_attention_layernorm.weight`, [H]),
      gate: linear(`${p}.mlp.gate_proj.weight`, [F, H]),
      up: linear(`${p}.mlp.up_proj.weight`, [F, H]),
      down: linear(`${p}.mlp.down_proj.weight`, [H, F]),
    });
  }
  const embed = need('model.embed_tokens.weight', [config.vocabSize, H]);
  const lmHead = config.tieWordEmbeddings ? undefined : get('lm_head.weight', [config.vocabSize, H], true, shared);
  if (!config.tieWordEmbeddings && !lmHead) {
    // Some exports omit lm_head even though tie_word_embeddings is false in config.json.
    throw new QuantlensError('CONVERT', `lm_head.weight is missing and tie_word_embeddings is false`, dir);
  }
  return { config, weights: { embed, layers, finalNorm: need('model.norm.weight', [H]), lmHead } };
}

/** Files copied verbatim into the output folder when present. */
const COPIED = ['special_tokens_map.json', 'generation_config.json'];

/**
 * Converted weights above this many bytes go to model.onnx.data, streamed one tensor at a time:
 * real checkpoints never hold the model in memory; tiny test checkpoints stay a single file.
 */
export const CONVERT_INLINE_LIMIT = 64 * 2 ** 20;

export async function convertSafetensors(dir: string, outDir: string, opts: { inlineLimitBytes?: number } = {}): Promise<string> {
  const { config, weights } = readSafetensorsCheckpoint(dir);
  const tokFile = path.join(dir, 'tokenizer.json');
  if (!existsSync(tokFile)) throw new QuantlensError('CONVERT', `tokenizer.json is missing (the converted folder needs it)`, dir);
  const tokConfigFile = path.join(dir, 'tokenizer_config.json');
  const tokConfig = existsSync(tokConfigFile) ? readFileSync(tokConfigFile, 'utf8') : '{}\n';
  const files: Record<string, Uint8Array> = {};
  for (const name of COPIED) if (existsSync(path.join(dir, name))) files[name] = readFileSync(path.join(dir, name));
  await writeModelFolder(outDir, config, weights, readFileSync(tokFile, 'utf8'), tokConfig, { quantlens_converted_from: 'safetensors' }, { files, inlineLimitBytes: opts.inlineLimitBytes ?? CONVERT_INLINE_LIMIT });
  return outDir;
}
