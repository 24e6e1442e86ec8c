/**
 * One memory budget for the run (`memory_budget_gb`): an estimate, per component, of the bytes a
 * pipeline holds at its peak, computed from the model graph and the pipeline file BEFORE any
 * quantization, session or output exists, so a run that cannot fit is refused up front.
 *
 * Components (B = bytes; V vocab, H hidden, F the widest captured layer, L layers, C captured
 * layers, P precisions, T = batch.max_tokens):
 *   sessions      1.1 · Σ_p weights(p) + P · T · 4 B · (V + C·F + 4H + 3F)
 *                 weights(fp32) = the model's initializer bytes (inline or external data);
 *                 weights(quantized) = weights(fp32) − Σ quantized MatMul weights + the tensors the
 *                 variant declares for them (onnx/quantize emitters: exact sizes, before any data);
 *                 per batch and precision: logits [T, V], C captured [T, F] copies, and about
 *                 4H + 3F floats per token of one layer's working buffers in ONNX Runtime.
 *   quantization  6 × the largest quantized weight in float32 (the quantizer's measured peak,
 *                 issue 11), while quantizing on first use; counted when a quantized precision
 *                 is listed (an upper bound when the variant is already cached).
 *   correlation   the co-moments of the largest pass, d(d+1)/2 × 8 B per (layer, precision) key,
 *                 plus one batch's Gram (pipelines/correlation-budget.ts); keys that do not fit
 *                 together in min(correlation.memory_budget_gb, the budget less every other part)
 *                 are split into extra passes over the dataset.
 *   attribution   one attribution session at a time, holding the largest precision's weights
 *                 once (graphs reference the model's files, mapped unpacked), plus 3 × the largest
 *                 float32 matrix (the one layer dequantized or transposed at a time), plus the
 *                 step batch: attributionStepFactor (≥ 9, grows with depth) × `salience.memory_budget_gb` when the pipeline sets it, else
 *                 R · 4 B · (3V + L·(10H + 5F)) with R = 2^22 / max(F, V) token rows per step
 *                 (lig.ts's default chunk: logits, their gradient and the softmax; per layer the
 *                 activations kept for the backward pass);
 *                 with N attribution worker sessions (salience.workers, lig-parallel.ts), N − 1
 *                 more of everything but the mapped weights, plus 64 MiB a worker thread.
 *   baseline      0.3 GiB: Node, ONNX Runtime, tokenizer and the Parquet writers.
 * With `salience.schedule: during` the run holds the sum. `after` releases the inference
 * sessions before attributing (pipelines/salience-pass.ts), so it holds max(stream = every part
 * but attribution, salience pass = attribution + correlation + baseline + what the allocator keeps
 * of the released sessions, see retainedAfterRelease); `auto` takes `during` when its sum fits,
 * else `after`.
 */
import os from 'node:os';
import { QuantlensError } from '../core/errors.ts';
import type { OnnxModel, TensorInfo } from '../onnx/model-reader.ts';
import type { ActivationSite } from '../onnx/capture.ts';
import type { DTypeName } from '../onnx/dtypes.ts';
import { selectTargets } from '../onnx/quantize/targets.ts';
import { emitterFor } from '../onnx/quantize/index.ts';
import { QUANT_VARIANTS, variantSettings, type QuantVariant } from '../onnx/quantize/variants.ts';
import { describePasses, planCorrelationPasses, type CorrelationPassPlan } from './correlation-budget.ts';
import type { PipelineConfig } from './schema.ts';
import { defaultSessionSettings } from '../onnx/session.ts';
import { autoAttributionWorkers, threadsPerWorker } from '../operators/attribution/lig-parallel.ts';

const GiB = 1024 ** 3;
export const BASELINE_BYTES = 0.3 * GiB;
/** The quantizer's peak over its largest float32 weight (measured, issue 11). */
export const QUANTIZER_PEAK_FACTOR = 6;
/** Float32 copies of the largest matrix an attribution run holds at once (gate, dequantized/transposed, temporary). */
export const ATTRIBUTION_LAYER_COPIES = 3;
/** ONNX Runtime's peak for a backward step over the step batch LIG sizes (measured 5–9× on stories260K and the demo model). */
export const ATTRIBUTION_STEP_FACTOR = 9;
/**
 * Margin over L·(10H + 5F)·4 B per token row, what an attribution run holds per row: the
 * activations every layer above the override keeps for the backward pass (measured 1.05–1.10 ×
 * that at 0.1B and 0.5B with bench/attribution-rows.ts: 41.5 and 159 MiB per extra row).
 */
export const ATTRIBUTION_ROW_MARGIN = 1.2;

/**
 * Peak bytes of a step batch per byte of `salience.memory_budget_gb`. LIG sizes its rows by
 * (2F + V)·4 B each (activation, gradient, logits: lig.ts attributionRowBytes), but a row costs
 * about L·(10H + 5F)·4 B, so the ratio grows with depth (measured 4.4 at 0.1B and 15 at 0.5B):
 * the factor is 9 on the small models, 17 at 0.5B and ~30 at 1B. ATTRIBUTION_STEP_FACTOR stays the
 * floor (and what counts when H or L is unknown).
 */
export function attributionStepFactor(shape: ModelShape, F: number): number {
  const perRow = shape.layers * (10 * shape.hidden + 5 * F);
  return Math.max(ATTRIBUTION_STEP_FACTOR, (ATTRIBUTION_ROW_MARGIN * perRow) / (2 * F + shape.vocab));
}
/** lig.ts's default step chunk: rows·seq·max(width, vocab) elements per run. */
const LIG_CHUNK_ELEMENTS = 1 << 22;

export interface MemoryPart {
  name: 'sessions' | 'quantization' | 'correlation' | 'attribution' | 'baseline';
  bytes: number;
  detail: string;
}

export interface MemoryEstimate {
  budgetBytes: number;
  totalBytes: number;
  parts: MemoryPart[];
  /** The correlation keys' passes, when correlation is measured. */
  correlation?: CorrelationPassPlan;
  /**
   * With salience: when attribution runs and why; the peak of the stream (every part but
   * attribution, or all of them `during`) and of the salience pass (attribution + correlation +
   * baseline; 0 `during`).
   */
  salience?: {
    schedule: 'during' | 'after';
    reason: string;
    streamBytes: number;
    passBytes: number;
    /** Of passBytes: what the allocator keeps of the released inference sessions (retainedAfterRelease; 0 `during`). */
    retainedBytes: number;
    /** Attribution sessions prepack their MatMul weights: the budget holds the packed copy (attributionPackedBytes), counted in the attribution part. */
    prepack: boolean;
    /** Why prepacking is on or off. */
    prepackReason: string;
    /** Attribution worker sessions (operators/attribution/lig-parallel.ts; 1: one session in the main thread), and threads each. */
    workers: number;
    threadsPerWorker: number;
    /** Why that many (the rule, or the budget lowering it). */
    workersReason: string;
  };
}

/** The shape facts the estimate needs, read once from the graph and config.json. */
export interface ModelShape {
  vocab: number;
  hidden: number;
  layers: number;
}

/** V, H, L from config.json (Hugging Face keys), else the logits' last dimension; 0 when unknown. */
export function modelShape(m: OnnxModel, config: Record<string, any> | null, vocabSize: number | null): ModelShape {
  const n = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : 0);
  const logits = m.outputs.find((o) => o.name === 'logits') ?? m.outputs[0];
  const last = logits?.dims?.[logits.dims.length - 1];
  return {
    vocab: vocabSize ?? n(last),
    hidden: n(config?.hidden_size ?? config?.n_embd ?? config?.d_model),
    layers: n(config?.num_hidden_layers ?? config?.n_layer ?? config?.num_layers),
  };
}

const DTYPE_BYTES: Partial<Record<DTypeName, number>> = { float: 4, uint8: 1, int8: 1, uint16: 2, int16: 2, int32: 4, int64: 8, bool: 1, float16: 2, double: 8, uint32: 4, uint64: 8, bfloat16: 2 };
const gib = (b: number) => (b / GiB).toFixed(2);

/** The run's budget: `memory_budget_gb`, else 80 % of physical memory. */
export function budgetBytes(cfg: Pick<PipelineConfig, 'memory_budget_gb'>): number {
  return cfg.memory_budget_gb !== undefined ? cfg.memory_budget_gb * GiB : 0.8 * os.totalmem();
}

function tensorBytes(t: TensorInfo): number {
  return t.location.kind === 'empty' ? 0 : t.location.length;
}

/** Bytes of every initializer (inline or external data): what a session of the native model holds. */
export function modelWeightBytes(m: OnnxModel): number {
  let sum = 0;
  for (const t of m.initializers.values()) sum += tensorBytes(t);
  return sum;
}

/** Weight bytes of a quantized variant, from the tensors its emitter declares (no data computed). */
export function quantizedWeightBytes(m: OnnxModel, variant: QuantVariant, q: PipelineConfig['quantization']): { bytes: number; largestTarget: number } {
  const opts = { blockSize: q.block_size, doubleQuant: q.double_quant, symmetric: q.symmetric, outlierThreshold: q.outlier_threshold, includeLmHead: q.include_lm_head };
  const emitter = emitterFor(variant, variantSettings(variant, opts));
  const opset = m.opsets.find((o) => o.domain === '')?.version ?? 0;
  const ctx = { opset, fresh: (base: string) => base };
  let bytes = modelWeightBytes(m);
  let largestTarget = 0;
  for (const t of selectTargets(m, q.include_lm_head ?? false).targets) {
    bytes -= tensorBytes(t.weight);
    largestTarget = Math.max(largestTarget, t.K * t.N * 4);
    for (const nt of emitter.weight(t.weight.name, t.K, t.N, ctx).tensors) bytes += nt.dims.reduce((a, d) => a * d, 1) * (DTYPE_BYTES[nt.type] ?? 4);
  }
  return { bytes, largestTarget };
}

const isQuantized = (p: string): p is QuantVariant => (QUANT_VARIANTS as readonly string[]).includes(p);

/** One precision's session weights, and the largest float32 weight its quantizer reads (0 unquantized). */
export interface PrecisionWeights {
  precision: string;
  bytes: number;
  largestTarget: number;
}

/** Every precision's weights, computed once per estimate and read by the sessions and attribution parts. */
export function precisionWeights(m: OnnxModel, cfg: PipelineConfig): PrecisionWeights[] {
  const native = modelWeightBytes(m);
  return cfg.precisions.map((p) => ({ precision: p, ...(isQuantized(p) ? quantizedWeightBytes(m, p, cfg.quantization) : { bytes: native, largestTarget: 0 }) }));
}

/**
 * An inference session holds more than its weights' bytes (ORT's prepacked layouts, per-session
 * buffers): at ~1B, 7.2 GiB resident for 6.49 GiB of fp32 + nf4 + llm-int8 weights, which made the
 * stream's estimate 5 % under the measured peak (bench/scale.ts).
 */
export const SESSION_RESIDENT_FACTOR = 1.1;

/** sessions + quantization: weights per precision, per-batch activations, the quantizer's transient peak. */
export function sessionParts(weightsOf: PrecisionWeights[], cfg: PipelineConfig, sites: ActivationSite[], shape: ModelShape): MemoryPart[] {
  const F = Math.max(0, ...sites.map((s) => s.width ?? 0));
  const C = cfg.measure.some((x) => x === 'correlation' || x === 'agreement') || cfg.activations ? sites.length : 0;
  const perBatch = cfg.batch.max_tokens * 4 * (shape.vocab + C * F + 4 * shape.hidden + 3 * F);
  const details: string[] = [];
  let weights = 0;
  let largest = 0;
  for (const w of weightsOf) {
    weights += w.bytes;
    largest = Math.max(largest, w.largestTarget);
    details.push(`${w.precision} ${gib(w.bytes)}`);
  }
  const parts: MemoryPart[] = [
    { name: 'sessions', bytes: SESSION_RESIDENT_FACTOR * weights + cfg.precisions.length * perBatch, detail: `${SESSION_RESIDENT_FACTOR} × weights ${details.join(', ')} GiB + ${cfg.precisions.length} × ${gib(perBatch)} GiB per batch` },
  ];
  if (largest > 0) parts.push({ name: 'quantization', bytes: QUANTIZER_PEAK_FACTOR * largest, detail: `${QUANTIZER_PEAK_FACTOR} × largest weight ${gib(largest)} GiB, on first use` });
  return parts;
}

/** correlation: the co-moments of the largest pass over what the other parts leave (pipelines/correlation-budget.ts). */
export function correlationPasses(cfg: PipelineConfig, sites: ActivationSite[], otherBytes: number): CorrelationPassPlan | null {
  if (!cfg.measure.includes('correlation')) return null;
  const keys = cfg.precisions.flatMap((precision) => sites.map((s) => ({ precision, layer: s.layer, tensor: s.tensor, width: s.width ?? 0 })));
  return planCorrelationPasses(keys, {
    correlationBudgetBytes: cfg.correlation.memory_budget_gb * GiB,
    runBudgetBytes: budgetBytes(cfg),
    otherBytes,
    rows: cfg.batch.max_tokens,
    compute: cfg.correlation.compute,
    clusters: cfg.correlation.clusters,
  });
}

/**
 * attribution: ONE attribution session open at a time (pipelines/salience.ts), whose graph
 * references the model's weights (onnx/backward/weight-references.ts) and maps them unpacked, so
 * it holds at most the largest precision's weights once; while it runs, the one layer's weight it
 * dequantizes or transposes behind a gate (onnx/backward/emitter.ts: gate copy, dequantized or
 * transposed float32 weight, one temporary of the dequantization) — 3 × the largest float32
 * matrix; and the step batch: `salience.memory_budget_gb` × attributionStepFactor (ONNX
 * Runtime's backward pass holds the forward activations of every layer above the override).
 */
export function attributionPart(m: OnnxModel, weightsOf: PrecisionWeights[], cfg: PipelineConfig, sites: ActivationSite[], shape: ModelShape): MemoryPart | null {
  if (!cfg.measure.includes('salience')) return null;
  const weights = Math.max(...weightsOf.map((w) => w.bytes));
  const { layerCopies, step, stepWhy, largestMatrix } = attributionSessionPieces(m, cfg, sites, shape);
  return {
    name: 'attribution',
    bytes: weights + layerCopies + step,
    detail: `one session at a time: weights ${gib(weights)} GiB + ${ATTRIBUTION_LAYER_COPIES} × largest matrix ${gib(largestMatrix)} GiB + step batch ${gib(step)} GiB (${stepWhy})`,
  };
}

/** What each attribution session holds besides the mapped weights: the layer copies and the step batch (see attributionPart). */
function attributionSessionPieces(m: OnnxModel, cfg: PipelineConfig, sites: ActivationSite[], shape: ModelShape) {
  const largestMatrix = Math.max(0, ...selectTargets(m, true).targets.map((t) => t.K * t.N * 4));
  const F = attributedWidth(sites);
  const stepBudgetGb = (cfg.salience as { memory_budget_gb?: number }).memory_budget_gb;
  const rows = LIG_CHUNK_ELEMENTS / Math.max(F, shape.vocab);
  const factor = attributionStepFactor(shape, F);
  const step = stepBudgetGb !== undefined ? factor * stepBudgetGb * GiB : rows * 4 * (3 * shape.vocab + shape.layers * (10 * shape.hidden + 5 * F));
  const stepWhy = stepBudgetGb !== undefined ? `${factor.toFixed(1)} × salience.memory_budget_gb` : `~${Math.round(rows)} token rows per step`;
  return { largestMatrix, layerCopies: ATTRIBUTION_LAYER_COPIES * largestMatrix, step, stepWhy };
}

const attributedWidth = (sites: ActivationSite[]) => Math.max(1, ...sites.map((s) => s.width ?? 0));

/**
 * Bytes of ONNX Runtime's prepacked copy of an attribution session's weights (lig.ts `prepack`):
 * MLAS packs each constant float MatMul/Gemm weight into its own layout, about the float32 size
 * (fp16 and quantized weights are dequantized to float32 inside the graph first, so the float32
 * size bounds them too). null when the model has weights already quantized by its exporter, whose
 * packed size the graph does not tell: prepacking stays off for them.
 */
export function attributionPackedBytes(m: OnnxModel): number | null {
  const sel = selectTargets(m, true);
  if (sel.linear.some((l) => l.status === 'prequantized')) return null;
  return sel.targets.reduce((s, t) => s + t.K * t.N * 4, 0);
}

/** The parts no schedule changes: the stream's sessions (and quantization) and attribution, computed once. */
interface FixedParts {
  stream: MemoryPart[];
  attribution: MemoryPart | null;
}

/**
 * What the process still holds of the released inference sessions during the `after` salience
 * pass. glibc raises its mmap threshold each time a large block is freed, so the sessions'
 * medium-sized buffers come from the heap and stay mapped after release: measured, 0.33 (0.1B) and
 * 0.36 (1B) of the sessions part stayed resident; with MALLOC_MMAP_THRESHOLD_ set (a fixed
 * threshold) RSS fell back to the baseline. Elsewhere than glibc, or with it set, nothing is added.
 */
export const RETAINED_SESSION_FRACTION = 0.4;
function retainedAfterRelease(stream: MemoryPart[]): number {
  if (process.platform !== 'linux' || process.env.MALLOC_MMAP_THRESHOLD_ !== undefined) return 0;
  const sessions = stream.find((p) => p.name === 'sessions');
  return sessions ? RETAINED_SESSION_FRACTION * sessions.bytes : 0;
}

/** One schedule's estimate: `during` sums every part; `after` holds the larger of the stream's parts and the salience pass's. */
function estimateFor(cfg: PipelineConfig, sites: ActivationSite[], fixed: FixedParts, schedule: 'during' | 'after'): MemoryEstimate {
  const parts: MemoryPart[] = [...fixed.stream];
  const attribution = fixed.attribution;
  const baseline: MemoryPart = { name: 'baseline', bytes: BASELINE_BYTES, detail: 'Node, ONNX Runtime, tokenizer, writers' };
  const streamOthers = [...parts, baseline].reduce((s, p) => s + p.bytes, 0);
  // Correlation's accumulators live through both phases: it gets what the larger phase leaves.
  const others = !attribution ? streamOthers : schedule === 'during' ? streamOthers + attribution.bytes : Math.max(streamOthers, attribution.bytes + baseline.bytes);
  const correlation = correlationPasses(cfg, sites, others) ?? undefined;
  if (correlation) parts.push({ name: 'correlation', bytes: correlation.peakBytes, detail: describePasses(correlation) });
  if (attribution) parts.push(attribution);
  parts.push(baseline);
  const sum = parts.reduce((s, p) => s + p.bytes, 0);
  const e: MemoryEstimate = { budgetBytes: budgetBytes(cfg), totalBytes: sum, parts, correlation };
  if (!attribution) return e;
  const retained = retainedAfterRelease(fixed.stream);
  const pass = attribution.bytes + (correlation?.peakBytes ?? 0) + baseline.bytes + retained;
  const stream = sum - attribution.bytes;
  if (schedule === 'after') e.totalBytes = Math.max(stream, pass);
  const after = schedule === 'after';
  e.salience = { schedule, reason: '', streamBytes: after ? stream : sum, passBytes: after ? pass : 0, retainedBytes: after ? retained : 0, prepack: false, prepackReason: '', workers: 1, threadsPerWorker: threadsOf(cfg), workersReason: '' };
  return e;
}

/**
 * The estimate with attribution's prepacked copy when the budget holds it without changing
 * anything else (the same schedule and the same correlation passes); else `e` with prepacking off.
 */
function withPrepacking(m: OnnxModel, cfg: PipelineConfig, sites: ActivationSite[], fixed: FixedParts, e: MemoryEstimate): MemoryEstimate {
  const attribution = fixed.attribution;
  if (!e.salience || !attribution) return e;
  const packed = attributionPackedBytes(m);
  const off = (why: string) => {
    e.salience!.prepackReason = why;
    return e;
  };
  if (packed === null) return off('off: the model has exporter-quantized weights, whose packed size is not known');
  const packedPart: MemoryPart = { ...attribution, bytes: attribution.bytes + packed, detail: `${attribution.detail} + prepacked weights ${gib(packed)} GiB` };
  const withPack = estimateFor(cfg, sites, { ...fixed, attribution: packedPart }, e.salience.schedule);
  if (!fits(withPack)) return off(`off: the prepacked copy of the weights (${gib(packed)} GiB) does not fit in the budget`);
  if ((withPack.correlation?.passes.length ?? 0) !== (e.correlation?.passes.length ?? 0)) return off(`off: the prepacked copy of the weights (${gib(packed)} GiB) would add a correlation pass`);
  withPack.salience!.reason = e.salience.reason;
  withPack.salience!.prepack = true;
  withPack.salience!.prepackReason = `on: the budget holds the prepacked copy of the weights (${gib(packed)} GiB)`;
  return withPack;
}

/** A worker thread's own memory besides its session: a V8 isolate and the modules it loads (measured ~40 MiB each under tsx). */
export const ATTRIBUTION_WORKER_BASELINE_BYTES = 64 * 1024 ** 2;

// As plan.ts opens sessions: session.intra_op_threads when set, else the session default.
const threadsOf = (cfg: PipelineConfig) => (cfg.session.intra_op_threads > 0 ? cfg.session.intra_op_threads : defaultSessionSettings().intraOpThreads);

/**
 * The estimate with the attribution worker sessions of the rule (lig-parallel.ts
 * autoAttributionWorkers, or salience.workers), as many as the budget holds without changing
 * anything else (schedule, prepacking, correlation passes): each worker beyond the first holds its
 * own session's layer copies, step batch and prepacked copy (when on) and its thread's baseline;
 * the mapped weights are the same file pages for every session, counted once.
 */
function withWorkers(m: OnnxModel, cfg: PipelineConfig, sites: ActivationSite[], shape: ModelShape, fixed: FixedParts, e: MemoryEstimate): MemoryEstimate {
  const sal = e.salience;
  const attribution = e.parts.find((p) => p.name === 'attribution');
  if (!sal || !attribution) return e;
  const threads = threadsOf(cfg);
  const forced = cfg.salience.workers ?? 0;
  const rule = autoAttributionWorkers({ threads, width: attributedWidth(sites), executionProviders: cfg.session.execution_providers, forced });
  const set = (x: MemoryEstimate, workers: number, why: string) => {
    x.salience = { ...sal, workers, threadsPerWorker: workers > 1 ? threadsPerWorker(threads, workers) : threads, workersReason: why };
    return x;
  };
  if (rule.workers <= 1) return set(e, 1, rule.why);
  const { layerCopies, step } = attributionSessionPieces(m, cfg, sites, shape);
  const perWorker = ATTRIBUTION_WORKER_BASELINE_BYTES + layerCopies + step + (sal.prepack ? (attributionPackedBytes(m) ?? 0) : 0);
  for (let n = rule.workers; n > 1; n--) {
    const part: MemoryPart = { ...attribution, bytes: attribution.bytes + (n - 1) * perWorker, detail: `${attribution.detail}; ${n} worker sessions: + ${n - 1} × ${gib(perWorker)} GiB (each its layer copies, step batch${sal.prepack ? ', prepacked copy' : ''} and thread)` };
    const withN = estimateFor(cfg, sites, { ...fixed, attribution: part }, sal.schedule);
    if (!fits(withN) || (withN.correlation?.passes.length ?? 0) !== (e.correlation?.passes.length ?? 0)) continue;
    const why = n === rule.workers ? rule.why : `${n} worker sessions (${rule.why}; the budget holds ${n}, not ${rule.workers})`;
    return set(withN, n, why);
  }
  if (forced > 1) return set(e, 1, `one session: salience.workers ${forced} does not fit the budget (+ ${gib(perWorker)} GiB a worker)`);
  return set(e, 1, `one session: a second worker session (+ ${gib(perWorker)} GiB) does not fit the budget`);
}

const fits = (e: MemoryEstimate) => !e.correlation?.refusal && e.totalBytes <= e.budgetBytes;

/**
 * The estimate for the run's salience schedule (`salience.schedule`): as given, or under `auto`
 * `during` when the run fits that way (attribution per batch, beside the inference sessions),
 * else `after` (pipelines/salience-pass.ts: the inference sessions released first), whose need
 * is max(stream, salience pass) instead of the sum. When neither fits, `after`'s (smaller) need
 * is the one refused.
 */
export function estimateMemory(m: OnnxModel, cfg: PipelineConfig, sites: ActivationSite[], shape: ModelShape): MemoryEstimate {
  const want = cfg.salience.schedule ?? 'auto';
  const weights = precisionWeights(m, cfg);
  const fixed: FixedParts = { stream: sessionParts(weights, cfg, sites, shape), attribution: attributionPart(m, weights, cfg, sites, shape) };
  const during = estimateFor(cfg, sites, fixed, want === 'after' ? 'after' : 'during');
  if (!during.salience) return during;
  // Prepacking first (one session), then workers as the budget holds them, each with its copy.
  const chosen = (e: MemoryEstimate, reason: string) => withWorkers(m, cfg, sites, shape, fixed, withPrepacking(m, cfg, sites, fixed, withReason(e, reason)));
  if (want !== 'auto') return chosen(during, `salience.schedule: ${want}`);
  if (fits(during)) return chosen(during, `auto: attribution during the stream fits (${gib(during.totalBytes)} of ${gib(during.budgetBytes)} GiB)`);
  const after = estimateFor(cfg, sites, fixed, 'after');
  const why = during.correlation?.refusal ? 'a correlation key does not fit beside attribution' : `the sum would be ${gib(during.totalBytes)} GiB, over the ${gib(during.budgetBytes)} GiB budget`;
  return chosen(after, `auto: attribution during the stream does not fit (${why}); after it the run needs max(stream ${gib(after.salience!.streamBytes)}, salience pass ${gib(after.salience!.passBytes)}) GiB`);
}

function withReason(e: MemoryEstimate, reason: string): MemoryEstimate {
  e.salience!.reason = reason;
  return e;
}

/** Refuse a run whose estimate exceeds the budget: one line naming the largest part and the excess. */
export function checkMemoryBudget(e: MemoryEstimate, where: string): void {
  if (e.totalBytes <= e.budgetBytes) return;
  const largest = e.parts.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const others = e.parts.filter((p) => p !== largest).map((p) => `${p.name} ${gib(p.bytes)}`).join(', ');
  const after = e.salience?.schedule === 'after' ? `; salience after the stream: the larger of stream ${gib(e.salience.streamBytes)} and salience pass ${gib(e.salience.passBytes)} GiB` : '';
  throw new QuantlensError(
    'BUDGET',
    `the run needs about ${gib(e.totalBytes)} GiB, ${gib(e.totalBytes - e.budgetBytes)} GiB over the budget of ${gib(e.budgetBytes)} GiB; ` +
      `largest part: ${largest.name} ${gib(largest.bytes)} GiB (${largest.detail}); others: ${others} GiB${after}`,
    where,
  );
}

/** Lines for `quantlens validate`. */
export function formatMemoryEstimate(e: MemoryEstimate): string {
  const rows = e.parts.map((p) => `  ${p.name.padEnd(12)} ${gib(p.bytes).padStart(8)} GiB  ${p.detail}`);
  const passes = e.correlation ? [`correlation passes over the dataset: ${e.correlation.passes.length}`] : [];
  const schedule = e.salience ? [`salience schedule: ${e.salience.schedule} (${e.salience.reason})`, ...salienceLines(e), `attribution prepacking: ${e.salience.prepackReason}`, `attribution workers: ${e.salience.workers} × ${e.salience.threadsPerWorker} thread(s) (${e.salience.workersReason})`] : [];
  return [`memory estimate: ${gib(e.totalBytes)} GiB of a ${gib(e.budgetBytes)} GiB budget (memory_budget_gb)`, ...rows, ...passes, ...schedule].join('\n');
}

/** `after`: the salience pass's need, itemized, with the allocator's retention of the released sessions as its own line. */
function salienceLines(e: MemoryEstimate): string[] {
  const sal = e.salience;
  if (!sal || sal.schedule !== 'after') return [];
  const part = (name: MemoryPart['name']) => e.parts.find((p) => p.name === name)?.bytes ?? 0;
  const why = sal.retainedBytes > 0 ? `${RETAINED_SESSION_FRACTION} × sessions: glibc keeps part of the released sessions mapped; 0 with MALLOC_MMAP_THRESHOLD_ set` : 'nothing counted: MALLOC_MMAP_THRESHOLD_ is set or this is not Linux';
  return [
    `  stream       ${gib(sal.streamBytes).padStart(8)} GiB  every part but attribution`,
    `  salience pass ${gib(sal.passBytes).padStart(7)} GiB  attribution ${gib(part('attribution'))} + correlation ${gib(part('correlation'))} + baseline ${gib(part('baseline'))} + retained ${gib(sal.retainedBytes)} GiB`,
    `    retained   ${gib(sal.retainedBytes).padStart(8)} GiB  ${why}`,
  ];
}

/** The estimate as summary.json records it (GiB, 3 decimals). */
export function memoryRecord(e: MemoryEstimate): Record<string, unknown> {
  const r = (b: number) => Math.round((b / GiB) * 1000) / 1000;
  const salience = e.salience ? { salience: { schedule: e.salience.schedule, reason: e.salience.reason, stream_gib: r(e.salience.streamBytes), salience_pass_gib: r(e.salience.passBytes), prepack: e.salience.prepack, prepack_reason: e.salience.prepackReason, workers: e.salience.workers, threads_per_worker: e.salience.threadsPerWorker, workers_reason: e.salience.workersReason } } : {};
  return { budget_gib: r(e.budgetBytes), estimate_gib: r(e.totalBytes), parts: Object.fromEntries(e.parts.map((p) => [p.name, { gib: r(p.bytes), detail: p.detail }])), ...salience };
}
