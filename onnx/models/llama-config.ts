/**
 * The shape of a Llama-family decoder (Llama 1/2/3, Mistral, Qwen2, llama2.c checkpoints) as
 * the graph builder needs it, and its translation to and from Hugging Face config.json keys.
 */
import { QuantlensError } from '../../core/errors.ts';

/**
 * How RoPE pairs the dimensions of a head. 'interleaved': (x[2k], x[2k+1]) — Meta / llama2.c
 * weights. 'half': (x[k], x[k + d/2]) — HF `rotate_half`, which HF checkpoints are permuted for.
 */
export type RopeLayout = 'interleaved' | 'half';

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface LlamaConfig {
  modelType: 'llama' | 'mistral' | 'qwen2';
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  ropeScaling?: RopeScaling | null;
  /** Mistral: a query attends only to the last `slidingWindow` keys (itself included). */
  slidingWindow?: number | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2). */
  attentionBias: boolean;
  bosId: number;
  eosId: number;
  padId: number;
}

export function validateLlamaConfig(cfg: LlamaConfig, where = 'config'): void {
  const positive = ['hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'vocabSize', 'maxPositions'] as const;
  for (const k of positive) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) throw new QuantlensError('CONVERT', `${k} must be a positive integer, got ${cfg[k]}`, where);
  }
  if (cfg.numHeads % cfg.numKvHeads !== 0) throw new QuantlensError('CONVERT', `num_attention_heads ${cfg.numHeads} is not a multiple of num_key_value_heads ${cfg.numKvHeads}`, where);
  if (cfg.headDim % 2 !== 0) throw new QuantlensError('CONVERT', `head_dim ${cfg.headDim} must be even for RoPE`, where);
}

/** HF LlamaConfig-style config.json contents (plus `extra` keys, which win). */
export function hfConfigJson(cfg: LlamaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[cfg.modelType];
  const scaling = cfg.ropeScaling
    ? cfg.ropeScaling.type === 'linear'
      ? { rope_type: 'linear', factor: cfg.ropeScaling.factor }
      : {
          rope_type: 'llama3',
          factor: cfg.ropeScaling.factor,
          low_freq_factor: cfg.ropeScaling.lowFreqFactor,
          high_freq_factor: cfg.ropeScaling.highFreqFactor,
          original_max_position_embeddings: cfg.ropeScaling.originalMaxPositions,
        }
    : null;
  return {
    architectures: [arch],
    model_type: cfg.modelType,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    vocab_size: cfg.vocabSize,
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: scaling,
    hidden_act: 'silu',
    attention_bias: cfg.attentionBias,
    mlp_bias: false,
    bos_token_id: cfg.bosId,
    eos_token_id: cfg.eosId,
    pad_token_id: cfg.padId,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    torch_dtype: 'float32',
    use_cache: false,
    ...(cfg.slidingWindow ? { sliding_window: cfg.slidingWindow } : {}),
    // Not an HF key: the ONNX graph's RoPE pairing, so readers know what the weights expect.
    quantlens_rope_layout: cfg.ropeLayout,
    ...extra,
  };
}

function num(json: Record<string, any>, key: string, where: string, fallback?: number): number {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new QuantlensError('CONVERT', `config.json has no "${key}"`, where);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new QuantlensError('CONVERT', `config.json "${key}" must be a number, got ${JSON.stringify(v)}`, where);
  return v;
}

function firstId(v: unknown, fallback: number): number {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return fallback;
}

/**
 * Read an HF config.json of a Llama / Mistral / Qwen2 checkpoint. HF weights are permuted for
 * rotate_half, so the layout is 'half'. Architectures we cannot build raise UNSUPPORTED.
 */
export function llamaConfigFromHf(json: Record<string, any>, where = 'config.json'): LlamaConfig {
  const type = String(json.model_type ?? '');
  if (type !== 'llama' && type !== 'mistral' && type !== 'qwen2') {
    throw new QuantlensError('UNSUPPORTED', `model_type "${type}" is not supported by the converter (llama, mistral, qwen2 are)`, where);
  }
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') throw new QuantlensError('UNSUPPORTED', `hidden_act "${act}" is not supported (silu is)`, where);
  if (type === 'qwen2' && json.use_sliding_window === true) throw new QuantlensError('UNSUPPORTED', `Qwen2 use_sliding_window true (per-layer windows) is not supported`, where);
  if (json.mlp_bias) throw new QuantlensError('UNSUPPORTED', `mlp_bias true is not supported`, where);
  const hiddenSize = num(json, 'hidden_size', where);
  const numHeads = num(json, 'num_attention_heads', where);
  let ropeScaling: RopeScaling | null = null;
  const rs = json.rope_scaling;
  if (rs) {
    const kind = rs.rope_type ?? rs.type;
    if (kind === 'linear') ropeScaling = { type: 'linear', factor: num(rs, 'factor', where) };
    else if (kind === 'llama3')
      ropeScaling = {
        type: 'llama3',
        factor: num(rs, 'factor', where),
        lowFreqFactor: num(rs, 'low_freq_factor', where),
        highFreqFactor: num(rs, 'high_freq_factor', where),
        originalMaxPositions: num(rs, 'original_max_position_embeddings', where),
      };
    else if (kind !== 'default') throw new QuantlensError('UNSUPPORTED', `rope_scaling type "${kind}" is not supported (linear, llama3 are)`, where);
  }
  const cfg: LlamaConfig = {
    modelType: type,
    hiddenSize,
    intermediateSize: num(json, 'intermediate_size', where),
    numLayers: num(json, 'num_hidden_layers', where),
    numHeads,
    numKvHeads: num(json, 'num_key_value_heads', where, numHeads),
    headDim: num(json, 'head_dim', where, hiddenSize / numHeads),
    vocabSize: num(json, 'vocab_size', where),
    maxPositions: num(json, 'max_position_embeddings', where, 2048),
    rmsNormEps: num(json, 'rms_norm_eps', where, 1e-6),
    ropeTheta: num(json, 'rope_theta', where, 10000),
    ropeLayout: 'half',
    ropeScaling,
    // Qwen2 configs carry sliding_window but use it only with use_sliding_window (rejected above).
    slidingWindow: type === 'mistral' && typeof json.sliding_window === 'number' ? json.sliding_window : null,
    tieWordEmbeddings: Boolean(json.tie_word_embeddings ?? false),
    // Qwen2 always has q/k/v biases; Llama declares them with attention_bias.
    attentionBias: type === 'qwen2' ? true : Boolean(json.attention_bias ?? false),
    bosId: firstId(json.bos_token_id, 1),
    eosId: firstId(json.eos_token_id, 2),
    padId: firstId(json.pad_token_id, 0),
  };
  validateLlamaConfig(cfg, where);
  return cfg;
}
