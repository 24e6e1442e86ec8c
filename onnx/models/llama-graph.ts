/**
 * A Llama-family decoder written as an ONNX graph with the project's GraphBuilder, shaped like an
 * Optimum export without KV cache: inputs input_ids / attention_mask (int64 [batch, seq]),
 * output logits (float32 [batch, seq, vocab]); every call runs the whole sequence.
 *
 * Node names copy Optimum's (`/model/layers.3/mlp/act_fn/Mul` → `..._output_0`) so activation
 * capture finds the same tensors in built and exported models. Every linear layer is a plain
 * MatMul with a 2-D float32 initializer as B, which is what the quantizers look for. Only plain
 * ai.onnx opset-17 ops that a backward-graph generator can differentiate are used.
 */
import { promises as fsp, existsSync } from 'node:fs';
import path from 'node:path';
import { GraphBuilder, float, tensor, type ModelOptions } from '../builder.ts';
import { transposeMatrix } from '../matrix.ts';
import { writeAtomically } from '../../core/atomic-write.ts';
import { QuantlensError } from '../../core/errors.ts';
import { hfConfigJson, validateLlamaConfig, type LlamaConfig } from './llama-config.ts';

/**
 * A weight, in memory or loaded on first use (a converter streaming a checkpoint gives loaders, so
 * with `spill` the graph holds one tensor at a time; see writeModelFolder).
 */
export type Weight = Float32Array | (() => Float32Array);

/**
 * A loader that can also write its W [out, in] transposed straight into a buffer ([in, out]), so
 * a converter widening bf16 does both in one pass (safetensors.ts); used while spilling.
 */
export type TransposingLoader = (() => Float32Array) & { transposedInto?: (out: Float32Array) => void };

/**
 * Weight matrices are row-major [out, in] (y = W x), as in HF checkpoints and llama2.c files;
 * the builder transposes them into the MatMul layout [in, out].
 */
export interface LlamaLayerWeightsOf<W> {
  inputNorm: W; // [hidden]
  q: W; // [heads * headDim, hidden]
  k: W; // [kvHeads * headDim, hidden]
  v: W; // [kvHeads * headDim, hidden]
  o: W; // [hidden, heads * headDim]
  qBias?: W; // [heads * headDim] (Qwen2)
  kBias?: W;
  vBias?: W;
  postNorm: W; // [hidden]
  gate: W; // [intermediate, hidden]
  up: W; // [intermediate, hidden]
  down: W; // [hidden, intermediate]
}

export interface LlamaWeightsOf<W> {
  embed: W; // [vocab, hidden]
  layers: LlamaLayerWeightsOf<W>[];
  finalNorm: W; // [hidden]
  /** [vocab, hidden]; absent when tied to the embedding. */
  lmHead?: W;
}

export type LlamaLayerWeights = LlamaLayerWeightsOf<Float32Array>;
export type LlamaWeights = LlamaWeightsOf<Float32Array>;
/** Weights that may be loaders: what buildLlamaGraph and writeModelFolder accept. */
export type AnyLlamaWeights = LlamaWeightsOf<Weight>;

export interface LlamaGraphOptions {
  graphName?: string;
  /** Write every large initializer to this data file as soon as it is built (see GraphBuilder.spillTo). */
  spill?: { dataFile: string };
}

/** Masked attention scores get this additive bias; exp(-1e9 - max) is exactly 0 in float32. */
const MASKED = -1e9;

/** W [out, in] row-major → [in, out] row-major (MatMul's B). */
export { transposeMatrix } from '../matrix.ts';

/** RoPE inverse frequencies theta^(-2k/d), with HF's linear / llama3 scaling applied. */
export function ropeInverseFrequencies(cfg: LlamaConfig): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let k = 0; k < half; k++) inv[k] = 1 / Math.pow(cfg.ropeTheta, (2 * k) / cfg.headDim);
  const s = cfg.ropeScaling;
  if (s?.type === 'linear') for (let k = 0; k < half; k++) inv[k] /= s.factor;
  if (s?.type === 'llama3') {
    // transformers `_compute_llama3_parameters`.
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let k = 0; k < half; k++) {
      const wavelen = (2 * Math.PI) / inv[k];
      if (wavelen > lowWavelen) inv[k] /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[k] = (1 - smooth) * (inv[k] / s.factor) + smooth * inv[k];
      }
    }
  }
  return inv;
}

/** cos / sin of position × frequency, [maxPositions, headDim/2], computed in float64. */
export function ropeTables(cfg: LlamaConfig): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInverseFrequencies(cfg);
  const half = inv.length;
  const cos = new Float32Array(cfg.maxPositions * half);
  const sin = new Float32Array(cfg.maxPositions * half);
  for (let p = 0; p < cfg.maxPositions; p++)
    for (let k = 0; k < half; k++) {
      cos[p * half + k] = Math.cos(p * inv[k]);
      sin[p * half + k] = Math.sin(p * inv[k]);
    }
  return { cos, sin };
}

function checkLength(name: string, w: Weight | undefined, want: number): Float32Array {
  if (!w) throw new QuantlensError('CONVERT', `weight ${name} is missing`, name);
  const a = typeof w === 'function' ? w() : w;
  if (a.length !== want) throw new QuantlensError('CONVERT', `weight ${name} has ${a.length} values, expected ${want}`, name);
  return a;
}

/** Optimum-style node names: `<scope>/<Op>`, then `<scope>/<Op>_1`, `_2`, ... */
class NodeNamer {
  private used = new Map<string, number>();
  name(scope: string, op: string): string {
    const base = `${scope}/${op}`;
    const n = this.used.get(base) ?? 0;
    this.used.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }
}

/**
 * Writes one Llama decoder into a GraphBuilder, in the node order and with the Optimum-style names
 * torch.onnx gives it. Each method is one block of the model; `buildLlamaGraph` calls them in order.
 */
class LlamaGraphWriter {
  readonly g: GraphBuilder;
  private names = new NodeNamer();
  private readonly H: number;
  private readonly D: number;
  private readonly nH: number;
  private readonly nKv: number;
  private cos = '';
  private sin = '';
  private maskBias = '';

  constructor(private cfg: LlamaConfig, graphName: string, spill?: { dataFile: string }) {
    this.g = new GraphBuilder(graphName);
    if (spill) this.g.spillTo(spill.dataFile);
    this.H = cfg.hiddenSize;
    this.D = cfg.headDim;
    this.nH = cfg.numHeads;
    this.nKv = cfg.numKvHeads;
  }

  /** One node in `scope`; returns its single output `<name>_output_0`. */
  op(scope: string, type: string, inputs: string[], attrs: Record<string, any> = {}): string {
    return this.g.node(type, inputs, 1, attrs, { name: this.names.name(scope, type) })[0];
  }
  private i64 = (values: number[], dims?: number[]) => this.g.constI64(values, dims);
  private f32 = (v: number) => this.g.constF32([v], []);

  private transposeBuffer = new Float32Array(0);

  /**
   * W [out, in] as [in, out]. When the builder writes the initializer straight to the data file
   * (spill), one buffer is reused for every weight: a fresh 100 MB array per weight costs more in
   * page faults than the transpose itself.
   */
  private transposed(name: string, w: Weight, out: number, inp: number): Float32Array {
    if (!this.g.writesThrough(4 * out * inp)) return transposeMatrix(checkLength(name, w, out * inp), out, inp);
    if (this.transposeBuffer.length < out * inp) this.transposeBuffer = new Float32Array(out * inp);
    const into = this.transposeBuffer.subarray(0, out * inp);
    const direct = typeof w === 'function' ? (w as TransposingLoader).transposedInto : undefined;
    if (!direct) return transposeMatrix(checkLength(name, w, out * inp), out, inp, into);
    direct(into);
    return into;
  }

  /** y = x · Wᵀ with W [out, in] stored transposed as the MatMul initializer `<weightName>`. */
  linear(scope: string, x: string, weightName: string, w: Weight, out: number, inp: number, bias?: Weight): string {
    // Stored as [in, out]: HF / llama2.c keep [out, in], MatMul wants B with the input dim first.
    const b = this.g.initializer(weightName, tensor('float', [inp, out], this.transposed(weightName, w, out, inp)));
    const y = this.op(scope, 'MatMul', [x, b]);
    if (!bias) return y;
    const biasName = weightName.replace(/\.weight$/, '.bias');
    this.g.initializer(biasName, tensor('float', [out], checkLength(biasName, bias, out)));
    return this.op(scope, 'Add', [y, biasName]);
  }

  rmsNorm(scope: string, x: string, weightName: string, w: Weight): string {
    this.g.initializer(weightName, tensor('float', [this.H], checkLength(weightName, w, this.H)));
    const sq = this.op(scope, 'Pow', [x, this.f32(2)]);
    const mean = this.op(scope, 'ReduceMean', [sq], { axes: [-1], keepdims: 1 });
    const root = this.op(scope, 'Sqrt', [this.op(scope, 'Add', [mean, this.f32(this.cfg.rmsNormEps)])]);
    const inv = this.op(scope, 'Div', [this.f32(1), root]);
    return this.op(scope, 'Mul', [this.op(scope, 'Mul', [x, inv]), weightName]);
  }

  /** Inputs, embeddings, positions, RoPE angles and the attention mask bias; returns the embeddings. */
  shared(embed: Weight): string {
    const { g, cfg, op, i64, f32 } = this.bound();
    const V = cfg.vocabSize, H = this.H, D = this.D;
    const inputIds = g.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
    const mask = g.input('attention_mask', 'int64', ['batch_size', 'sequence_length']);
    g.initializer('model.embed_tokens.weight', tensor('float', [V, H], checkLength('model.embed_tokens.weight', embed, V * H)));
    const x = op('/model/embed_tokens', 'Gather', ['model.embed_tokens.weight', inputIds], { axis: 0 });

    // Position of a token = number of real tokens before it, so left padding does not shift it.
    const axis1 = i64([1], []);
    const cumsum = op('/model', 'CumSum', [mask, axis1]);
    const positions = op('/model', 'Max', [op('/model', 'Sub', [cumsum, i64([1], [])]), i64([0], [])]);

    const tables = ropeTables(cfg);
    g.initializer('model.rotary_emb.cos_table', tensor('float', [cfg.maxPositions, D / 2], tables.cos));
    g.initializer('model.rotary_emb.sin_table', tensor('float', [cfg.maxPositions, D / 2], tables.sin));
    // [B, 1, S, D/2] for 'half'; [B, 1, S, D/2, 1] for 'interleaved' (pairs on a trailing axis).
    const ropeAxes = cfg.ropeLayout === 'interleaved' ? [1, 4] : [1];
    this.cos = op('/model/rotary_emb', 'Unsqueeze', [op('/model/rotary_emb', 'Gather', ['model.rotary_emb.cos_table', positions], { axis: 0 }), i64(ropeAxes)]);
    this.sin = op('/model/rotary_emb', 'Unsqueeze', [op('/model/rotary_emb', 'Gather', ['model.rotary_emb.sin_table', positions], { axis: 0 }), i64(ropeAxes)]);

    // Index 1..S along the sequence, built from the mask's shape (no Shape/Range needed).
    const ones = op('/model', 'Cast', [op('/model', 'Equal', [mask, mask])], { to: 7 });
    const index = op('/model', 'CumSum', [ones, axis1]);
    const queryIndex = op('/model', 'Unsqueeze', [index, i64([2])]); // [B, S, 1]
    const keyIndex = op('/model', 'Unsqueeze', [index, i64([1])]); // [B, 1, S]
    let allowed = op('/model', 'LessOrEqual', [keyIndex, queryIndex]); // causal [B, S, S]
    const keyIsToken = op('/model', 'Equal', [op('/model', 'Unsqueeze', [mask, i64([1])]), i64([1], [])]); // [B, 1, S]
    allowed = op('/model', 'And', [allowed, keyIsToken]);
    if (cfg.slidingWindow) {
      const distance = op('/model', 'Sub', [queryIndex, keyIndex]);
      allowed = op('/model', 'And', [allowed, op('/model', 'Less', [distance, i64([cfg.slidingWindow], [])])]);
    }
    // Additive bias (0 or -1e9) rather than Where on the scores: the scores' gradient is then a plain Add.
    this.maskBias = op('/model', 'Where', [op('/model', 'Unsqueeze', [allowed, i64([1])]), f32(0), f32(MASKED)]); // [B, 1, S, S]
    return x;
  }

  /** `op`, the constants and the builder as plain functions, for blocks written as expressions. */
  private bound() {
    return { g: this.g, cfg: this.cfg, op: this.op.bind(this), i64: this.i64, f32: this.f32 };
  }

  rope(scope: string, t: string): string {
    const { g, op, i64 } = this.bound();
    const D = this.D, cos = this.cos, sin = this.sin;
    if (this.cfg.ropeLayout === 'interleaved') {
      // Pairs (x[2k], x[2k+1]): view [B, h, S, D/2, 2] and split the trailing pair axis.
      const pairs = op(scope, 'Reshape', [t, i64([0, 0, 0, D / 2, 2])]);
      const [a, b] = g.node('Split', [pairs], 2, { axis: -1 }, { name: this.names.name(scope, 'Split') });
      const re = op(scope, 'Sub', [op(scope, 'Mul', [a, cos]), op(scope, 'Mul', [b, sin])]);
      const im = op(scope, 'Add', [op(scope, 'Mul', [b, cos]), op(scope, 'Mul', [a, sin])]);
      return op(scope, 'Reshape', [op(scope, 'Concat', [re, im], { axis: -1 }), i64([0, 0, 0, D])]);
    }
    // Pairs (x[k], x[k + D/2]): HF rotate_half.
    const [a, b] = g.node('Split', [t], 2, { axis: -1 }, { name: this.names.name(scope, 'Split') });
    const re = op(scope, 'Sub', [op(scope, 'Mul', [a, cos]), op(scope, 'Mul', [b, sin])]);
    const im = op(scope, 'Add', [op(scope, 'Mul', [b, cos]), op(scope, 'Mul', [a, sin])]);
    return op(scope, 'Concat', [re, im], { axis: -1 });
  }

  /** [B, S, heads*D] → [B, heads, S, D] */
  splitHeads(scope: string, t: string, heads: number): string {
    return this.op(scope, 'Transpose', [this.op(scope, 'Reshape', [t, this.i64([0, 0, heads, this.D])])], { perm: [0, 2, 1, 3] });
  }

  /** GQA: kv head j serves query heads j*group .. j*group+group-1 → repeat each kv head `group` times. */
  repeatKv(scope: string, t: string): string {
    const group = this.nH / this.nKv;
    if (group === 1) return t;
    const u = this.op(scope, 'Unsqueeze', [t, this.i64([2])]); // [B, nKv, 1, S, D]
    const rep = this.op(scope, 'Concat', Array(group).fill(u), { axis: 2 }); // [B, nKv, group, S, D]
    return this.op(scope, 'Reshape', [rep, this.i64([0, this.nH, -1, this.D])]);
  }

  /** Pre-norm self-attention with its residual: x + o_proj(attention(norm(x))). */
  attention(i: number, x: string, L: LlamaLayerWeightsOf<Weight>): string {
    const { op, i64, f32 } = this.bound();
    const { H, D, nH, nKv } = this;
    const pre = `model.layers.${i}`;
    const scope = `/model/layers.${i}`;
    const attn = `${scope}/self_attn`;
    const h = this.rmsNorm(`${scope}/input_layernorm`, x, `${pre}.input_layernorm.weight`, L.inputNorm);
    const q = this.linear(`${attn}/q_proj`, h, `${pre}.self_attn.q_proj.weight`, L.q, nH * D, H, L.qBias);
    const k = this.linear(`${attn}/k_proj`, h, `${pre}.self_attn.k_proj.weight`, L.k, nKv * D, H, L.kBias);
    const v = this.linear(`${attn}/v_proj`, h, `${pre}.self_attn.v_proj.weight`, L.v, nKv * D, H, L.vBias);
    if (this.cfg.attentionBias && !(L.qBias && L.kBias && L.vBias)) throw new QuantlensError('CONVERT', `layer ${i}: attention_bias is set but q/k/v biases are missing`, `${pre}.self_attn`);

    const qh = this.rope(`${attn}/rotary_q`, this.splitHeads(attn, q, nH));
    const kh = this.repeatKv(attn, this.rope(`${attn}/rotary_k`, this.splitHeads(attn, k, nKv)));
    const vh = this.repeatKv(attn, this.splitHeads(attn, v, nKv));
    const kt = op(attn, 'Transpose', [kh], { perm: [0, 1, 3, 2] });
    const scores = op(attn, 'Div', [op(attn, 'MatMul', [qh, kt]), f32(Math.sqrt(D))]);
    const probs = op(attn, 'Softmax', [op(attn, 'Add', [scores, this.maskBias])], { axis: -1 });
    const ctx = op(attn, 'MatMul', [probs, vh]); // [B, nH, S, D]
    const merged = op(attn, 'Reshape', [op(attn, 'Transpose', [ctx], { perm: [0, 2, 1, 3] }), i64([0, 0, nH * D])]);
    const o = this.linear(`${attn}/o_proj`, merged, `${pre}.self_attn.o_proj.weight`, L.o, H, nH * D);
    return op(scope, 'Add', [x, o]);
  }

  /** Pre-norm gated MLP with its residual: x + down(silu(gate(norm(x))) · up(norm(x))). */
  mlp(i: number, x: string, L: LlamaLayerWeightsOf<Weight>): string {
    const { H } = this;
    const F = this.cfg.intermediateSize;
    const pre = `model.layers.${i}`;
    const scope = `/model/layers.${i}`;
    const h2 = this.rmsNorm(`${scope}/post_attention_layernorm`, x, `${pre}.post_attention_layernorm.weight`, L.postNorm);
    const gate = this.linear(`${scope}/mlp/gate_proj`, h2, `${pre}.mlp.gate_proj.weight`, L.gate, F, H);
    const up = this.linear(`${scope}/mlp/up_proj`, h2, `${pre}.mlp.up_proj.weight`, L.up, F, H);
    // SiLU as Sigmoid + Mul, as torch exports it: `/model/layers.i/mlp/act_fn/Mul_output_0` is the hooked tensor.
    const act = this.op(`${scope}/mlp/act_fn`, 'Mul', [gate, this.op(`${scope}/mlp/act_fn`, 'Sigmoid', [gate])]);
    const prod = this.op(`${scope}/mlp`, 'Mul', [act, up]);
    const down = this.linear(`${scope}/mlp/down_proj`, prod, `${pre}.mlp.down_proj.weight`, L.down, H, F);
    return this.op(scope, 'Add', [x, down]);
  }

  /** Final norm and the classifier, output `logits`. */
  head(x: string, weights: AnyLlamaWeights): void {
    const { H } = this;
    const V = this.cfg.vocabSize;
    const normed = this.rmsNorm('/model/norm', x, 'model.norm.weight', weights.finalNorm);
    // Tied or not, the classifier is its own 2-D MatMul weight (a tied one is stored twice) so
    // quantizers treat it like every other linear layer.
    const head = this.cfg.tieWordEmbeddings ? weights.embed : weights.lmHead;
    if (!head) throw new QuantlensError('CONVERT', `untied model without lm_head weights`, 'lm_head.weight');
    const headT = this.g.initializer('lm_head.weight', tensor('float', [H, V], this.transposed('lm_head.weight', head, V, H)));
    this.g.node('MatMul', [normed, headT], ['logits'], {}, { name: '/lm_head/MatMul' });
    this.g.output('logits', 'float', ['batch_size', 'sequence_length', V]);
  }
}

export function buildLlamaGraph(cfg: LlamaConfig, weights: AnyLlamaWeights, opts: LlamaGraphOptions = {}): GraphBuilder {
  validateLlamaConfig(cfg);
  if (weights.layers.length !== cfg.numLayers) throw new QuantlensError('CONVERT', `${weights.layers.length} layers of weights for num_hidden_layers ${cfg.numLayers}`, 'weights');
  const w = new LlamaGraphWriter(cfg, opts.graphName ?? 'main_graph', opts.spill);
  let x = w.shared(weights.embed);
  for (let i = 0; i < cfg.numLayers; i++) {
    x = w.attention(i, x, weights.layers[i]);
    x = w.mlp(i, x, weights.layers[i]);
  }
  w.head(x, weights);
  return w.g;
}

/** Parameters of the float graph (the classifier counted once more when tied: it is stored twice). */
export function llamaParameterCount(cfg: LlamaConfig): number {
  const H = cfg.hiddenSize, D = cfg.headDim, F = cfg.intermediateSize;
  const attn = 2 * cfg.numHeads * D * H + 2 * cfg.numKvHeads * D * H + (cfg.attentionBias ? cfg.numHeads * D + 2 * cfg.numKvHeads * D : 0);
  const layer = attn + 3 * F * H + 2 * H;
  return cfg.numLayers * layer + 2 * cfg.vocabSize * H + H;
}

/** Above this many weight bytes model.onnx gets an external data file (protobuf caps at 2 GiB). */
const INLINE_LIMIT = 1.5e9;

export interface ModelFolderOptions {
  /** ONNX metadata_props. */
  metadata?: Record<string, string>;
  /** Extra files (name → contents) written into the folder, e.g. prompts.jsonl. */
  files?: Record<string, string | Uint8Array>;
  /** Weight bytes above which model.onnx.data is used (default 1.5e9; tests lower it). */
  inlineLimitBytes?: number;
  /**
   * Caches: called when `dir` exists at the moment of the swap; true keeps that folder and drops
   * the one just built. Two processes filling the same cache at once then never move a complete
   * folder aside (which left `dir` absent between the two renames, and the other process's
   * session failing to find it).
   */
  keepExisting?: (dir: string) => boolean;
}

/** Thrown inside writeAtomically's callback to drop the folder just built (keepExisting). */
const KEEP_EXISTING = new Error('kept the existing folder');

/**
 * Write a complete model folder — config.json, tokenizer.json, tokenizer_config.json,
 * model.onnx (+ model.onnx.data when large) — into a temporary sibling folder, then rename it
 * into place, so `dir` is either absent, the old folder, or the complete new one.
 */
export async function writeModelFolder(
  dir: string,
  cfg: LlamaConfig,
  weights: AnyLlamaWeights,
  tokenizerJson: unknown,
  tokenizerConfig: unknown,
  extraConfig: Record<string, unknown> = {},
  opts: ModelFolderOptions = {},
): Promise<void> {
  // Known from the config, before any weight is loaded: large models stream to external data.
  const weightBytes = 4 * llamaParameterCount(cfg);
  const modelOpts: ModelOptions = { opset: 17, irVersion: 8, producer: 'quantlens', metadata: opts.metadata };
  const stash = `${dir}.old-${process.pid}`;
  let kept = false;
  const written = writeAtomically(dir, async (tmp) => {
    await fsp.mkdir(tmp, { recursive: true });
    const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
    await fsp.writeFile(path.join(tmp, 'config.json'), json(hfConfigJson(cfg, extraConfig)));
    await fsp.writeFile(path.join(tmp, 'tokenizer.json'), typeof tokenizerJson === 'string' ? tokenizerJson : json(tokenizerJson));
    await fsp.writeFile(path.join(tmp, 'tokenizer_config.json'), typeof tokenizerConfig === 'string' ? tokenizerConfig : json(tokenizerConfig));
    for (const [name, data] of Object.entries(opts.files ?? {})) await fsp.writeFile(path.join(tmp, name), data);
    if (weightBytes < (opts.inlineLimitBytes ?? INLINE_LIMIT)) await fsp.writeFile(path.join(tmp, 'model.onnx'), buildLlamaGraph(cfg, weights).toModel(modelOpts));
    else {
      // Each weight is loaded, transposed and written to model.onnx.data before the next one.
      const graph = buildLlamaGraph(cfg, weights, { spill: { dataFile: path.join(tmp, 'model.onnx.data') } });
      await graph.finishSpill(path.join(tmp, 'model.onnx'), modelOpts);
    }
    // rename() cannot replace a non-empty folder: move the old one aside just before the swap.
    if (existsSync(dir)) {
      if (opts.keepExisting?.(dir)) {
        kept = true;
        throw KEEP_EXISTING;
      }
      await fsp.rename(dir, stash);
    }
  });
  try {
    await written;
  } catch (e) {
    // writeAtomically has removed the temporary folder; the existing one stays as it is. The
    // other build may also have landed between the check above and the swap (rename then fails).
    if (kept || (opts.keepExisting && existsSync(dir) && opts.keepExisting(dir))) return;
    throw e;
  }
  await fsp.rm(stash, { recursive: true, force: true });
}
