/** Test-only: writes Hugging Face-layout safetensors checkpoints, from the format description. */
import { writeFileSync } from 'node:fs';
import type { LlamaConfig } from '../../../onnx/models/llama-config.ts';
import type { LlamaWeights } from '../../../onnx/models/llama-graph.ts';

export type Dtype = 'F32' | 'F16' | 'BF16';

/** float32 → IEEE half bits, round to nearest even (written here independently of onnx/dtypes.ts). */
export function toHalfBits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const a = Math.abs(x);
  if (a === 0) return sign;
  // Scale into the half grid and round with Math.round-to-even on the integer mantissa.
  let e = Math.floor(Math.log2(a));
  if (e < -14) e = -14; // subnormals share exponent -14
  const q = a / 2 ** (e - 10);
  let m = Math.round(q);
  if (Math.abs(q - Math.trunc(q) - 0.5) < 1e-12 && m % 2 === 1) m -= 1;
  if (m === 2048) { m = 1024; e += 1; }
  if (e > 15) return sign | 0x7c00;
  if (m < 1024) return sign | m; // subnormal
  return sign | ((e + 15) << 10) | (m - 1024);
}

/** float32 → bfloat16 bits, round to nearest even on the dropped 16 bits. */
export function toBf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function encodeTensor(data: Float32Array, dtype: Dtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const bits = Uint16Array.from(data, dtype === 'F16' ? toHalfBits : toBf16Bits);
  return new Uint8Array(bits.buffer);
}

/** A .safetensors file, written from the format description (8-byte header length, JSON, data). */
export function writeSafetensors(file: string, tensors: Record<string, { data: Float32Array; shape: number[] }>, dtype: Dtype): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const b = encodeTensor(t.data, dtype);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + b.length] };
    blobs.push(b);
    offset += b.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...blobs]));
}

/** HF's convert_llama_weights_to_hf `permute`: interleaved RoPE pairs → rotate_half halves, per head. */
export function permuteForRotateHalf(w: Float32Array, heads: number, headDim: number, inp: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let k = 0; k < headDim / 2; k++)
      for (let r = 0; r < 2; r++) {
        const src = h * headDim + 2 * k + r;
        const dst = h * headDim + r * (headDim / 2) + k;
        out.set(w.subarray(src * inp, (src + 1) * inp), dst * inp);
      }
  return out;
}

export function hfTensors(cfg: LlamaConfig, w: LlamaWeights, permute: boolean): Record<string, { data: Float32Array; shape: number[] }> {
  const H = cfg.hiddenSize, F = cfg.intermediateSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  const t: Record<string, { data: Float32Array; shape: number[] }> = { 'model.embed_tokens.weight': { data: w.embed, shape: [cfg.vocabSize, H] } };
  w.layers.forEach((L, i) => {
    const p = `model.layers.${i}`;
    t[`${p}.input_layernorm.weight`] = { data: L.inputNorm, shape: [H] };
    t[`${p}.self_attn.q_proj.weight`] = { data: permute ? permuteForRotateHalf(L.q, cfg.numHeads, cfg.headDim, H) : L.q, shape: [q, H] };
    t[`${p}.self_attn.k_proj.weight`] = { data: permute ? permuteForRotateHalf(L.k, cfg.numKvHeads, cfg.headDim, H) : L.k, shape: [kv, H] };
    t[`${p}.self_attn.v_proj.weight`] = { data: L.v, shape: [kv, H] };
    t[`${p}.self_attn.o_proj.weight`] = { data: L.o, shape: [H, q] };
    if (L.qBias) {
      t[`${p}.self_attn.q_proj.bias`] = { data: L.qBias, shape: [q] };
      t[`${p}.self_attn.k_proj.bias`] = { data: L.kBias!, shape: [kv] };
      t[`${p}.self_attn.v_proj.bias`] = { data: L.vBias!, shape: [kv] };
    }
    t[`${p}.post_attention_layernorm.weight`] = { data: L.postNorm, shape: [H] };
    t[`${p}.mlp.gate_proj.weight`] = { data: L.gate, shape: [F, H] };
    t[`${p}.mlp.up_proj.weight`] = { data: L.up, shape: [F, H] };
    t[`${p}.mlp.down_proj.weight`] = { data: L.down, shape: [H, F] };
  });
  t['model.norm.weight'] = { data: w.finalNorm, shape: [H] };
  if (w.lmHead) t['lm_head.weight'] = { data: w.lmHead, shape: [cfg.vocabSize, H] };
  return t;
}

export function hfConfig(cfg: LlamaConfig, over: Record<string, unknown> = {}) {
  return {
    model_type: cfg.modelType, hidden_size: cfg.hiddenSize, intermediate_size: cfg.intermediateSize, num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads, num_key_value_heads: cfg.numKvHeads, vocab_size: cfg.vocabSize, max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps, rope_theta: cfg.ropeTheta, tie_word_embeddings: cfg.tieWordEmbeddings, hidden_act: 'silu', ...over,
  };
}

