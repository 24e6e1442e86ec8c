/**
 * llama2.c "legacy" (version 0) checkpoints → a model folder (config.json, model.onnx,
 * tokenizer.json, tokenizer_config.json).
 *
 * File layout (little-endian, no magic): 7 × int32 header = dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size (negative = untied classifier), seq_len; then float32 arrays
 * token_embedding [V, dim]; rms_att [L, dim]; wq [L, dim, dim]; wk [L, kv_dim, dim];
 * wv [L, kv_dim, dim]; wo [L, dim, dim]; rms_ffn [L, dim]; w1 [L, hidden, dim];
 * w2 [L, dim, hidden]; w3 [L, hidden, dim]; rms_final [dim]; freq_cis_real / imag
 * [seq_len, head_size/2] (unused: the graph computes its own RoPE); wcls [V, dim] when untied.
 * Matrices are [out, in]; RoPE pairs are interleaved, as Meta's original weights.
 */
import { readFileSync } from 'node:fs';
import { QuantlensError } from '../../core/errors.ts';
import type { LlamaConfig } from '../models/llama-config.ts';
import { writeModelFolder, type LlamaWeights } from '../models/llama-graph.ts';
import { convertLlama2cTokenizer } from './llama2c-tokenizer.ts';

export interface Llama2cCheckpoint {
  config: LlamaConfig;
  weights: LlamaWeights;
}

export function readLlama2cCheckpoint(binPath: string): Llama2cCheckpoint {
  let buf: Buffer;
  try {
    buf = readFileSync(binPath);
  } catch (e) {
    throw new QuantlensError('CONVERT', `cannot read llama2.c checkpoint: ${(e as Error).message}`, binPath, { cause: e });
  }
  if (buf.length < 28) throw new QuantlensError('CONVERT', `file is too short for a llama2.c header (${buf.length} bytes)`, binPath);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const [dim, hidden, nLayers, nHeads, nKv, vocabSigned, seqLen] = Array.from({ length: 7 }, (_, i) => dv.getInt32(i * 4, true));
  const where = `${binPath} (header ${[dim, hidden, nLayers, nHeads, nKv, vocabSigned, seqLen].join(', ')})`;
  if (dim === 0x616b3432) throw new QuantlensError('UNSUPPORTED', `this is a llama2.c version-1+ export (magic "ak42"); only the legacy version-0 format is supported`, binPath);
  const vocab = Math.abs(vocabSigned);
  if ([dim, hidden, nLayers, nHeads, nKv, vocab, seqLen].some((v) => v <= 0 || v > 1e7) || dim % nHeads !== 0 || nHeads % nKv !== 0) {
    throw new QuantlensError('CONVERT', `not a llama2.c legacy checkpoint: implausible header`, where);
  }
  const tied = vocabSigned > 0;
  const headDim = dim / nHeads;
  const kvDim = nKv * headDim;
  const total =
    vocab * dim + nLayers * (2 * dim + dim * dim * 2 + kvDim * dim * 2 + hidden * dim * 3) + dim + seqLen * headDim + (tied ? 0 : vocab * dim);
  if (buf.length !== 28 + total * 4) {
    throw new QuantlensError('CONVERT', `file has ${buf.length} bytes, header implies ${28 + total * 4}`, where);
  }
  // Copy into an aligned buffer (the header is 28 bytes, so the floats are unaligned in `buf`).
  const all = new Float32Array(total);
  new Uint8Array(all.buffer).set(buf.subarray(28, 28 + total * 4));
  let off = 0;
  const take = (n: number) => all.subarray(off, (off += n));
  const perLayer = (n: number) => Array.from({ length: nLayers }, () => take(n));
  const embed = take(vocab * dim);
  const rmsAtt = perLayer(dim);
  const wq = perLayer(dim * dim);
  const wk = perLayer(kvDim * dim);
  const wv = perLayer(kvDim * dim);
  const wo = perLayer(dim * dim);
  const rmsFfn = perLayer(dim);
  const w1 = perLayer(hidden * dim);
  const w2 = perLayer(dim * hidden);
  const w3 = perLayer(hidden * dim);
  const finalNorm = take(dim);
  take(seqLen * headDim); // freq_cis_real + freq_cis_imag, [seq_len, head_size/2] each
  const lmHead = tied ? undefined : take(vocab * dim);

  const config: LlamaConfig = {
    modelType: 'llama',
    hiddenSize: dim,
    intermediateSize: hidden,
    numLayers: nLayers,
    numHeads: nHeads,
    numKvHeads: nKv,
    headDim,
    vocabSize: vocab,
    maxPositions: seqLen,
    rmsNormEps: 1e-5, // llama2.c run.c hard-codes 1e-5
    ropeTheta: 10000, // run.c hard-codes 10000
    ropeLayout: 'interleaved',
    tieWordEmbeddings: tied,
    attentionBias: false,
    bosId: 1,
    eosId: 2,
    padId: 0,
  };
  const weights: LlamaWeights = {
    embed,
    finalNorm,
    lmHead,
    layers: Array.from({ length: nLayers }, (_, i) => ({
      inputNorm: rmsAtt[i],
      q: wq[i],
      k: wk[i],
      v: wv[i],
      o: wo[i],
      postNorm: rmsFfn[i],
      gate: w1[i], // FFN = w2(silu(w1 x) * w3 x)
      up: w3[i],
      down: w2[i],
    })),
  };
  return { config, weights };
}

/** Convert a llama2.c checkpoint + tokenizer file into a model folder at outDir. */
export async function convertLlama2c(binPath: string, tokPath: string, outDir: string): Promise<string> {
  const { config, weights } = readLlama2cCheckpoint(binPath);
  const { tokenizerJson, tokenizerConfig } = convertLlama2cTokenizer(tokPath, config.vocabSize, config.maxPositions);
  await writeModelFolder(outDir, config, weights, tokenizerJson, tokenizerConfig, { quantlens_converted_from: 'llama2.c' });
  return outDir;
}
