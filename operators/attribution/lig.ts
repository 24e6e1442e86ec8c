/**
 * Layer Integrated Gradients, computed as Captum's LayerIntegratedGradients does, on an
 * attribution graph (onnx/backward/graph.ts) run by ONNX Runtime:
 *   a_in   = the layer's output on the input ids, a_base = on the baseline ids (every real token
 *            replaced by baselineTokenId, same mask);
 *   a(α)   = a_base + α·(a_in − a_base) fed as the layer override, the rest of the model on the
 *            INPUT ids (Captum hooks the layer and runs the forward on the inputs);
 *   attr   = (a_in − a_base) ⊙ Σ_k w_k ∇F(a(α_k))   (Gauss–Legendre nodes α_k, weights w_k)
 *   F      = log_softmax(logits at the last position)[target].
 * Completeness: Σ attr ≈ F(a_in) − F(a_base); its relative error is reported per example.
 *
 * All (example, α) rows of a batch are queued, with α=0 and α=1 as extra rows for F_baseline and
 * F_input, and run in chunks whose size follows the memory budget.
 */
import ort from 'onnxruntime-node';
import { QuantlensError } from '../../core/errors.ts';
import { buildFeeds, planInputs, type InputPlan } from '../../onnx/feeds.ts';
import { readOnnxModel, type OnnxModel } from '../../onnx/model-reader.ts';
import { createSession, defaultSessionSettings, type SessionSettings } from '../../onnx/session.ts';
import {
  externalDataDirOf,
  gradName,
  FORWARD_ONLY_TARGET,
  OBJECTIVE_OUTPUT,
  originalName,
  overrideName,
  TARGET_INPUT,
} from '../../onnx/backward/graph.ts';
import type { FeedBuilder } from '../../onnx/backward/probe.ts';
import { gaussLegendre } from './gauss-legendre.ts';
import { cachedAttributionGraph } from './graph-cache.ts';
import { checkBatchMajor, isFlatSite } from './flat-site.ts';
import { cutRowBytes, type CutTensor } from '../../onnx/backward/prefix-split.ts';
import { CutValues } from './cut-values.ts';

const NO_PREPACKING = 'session.disable_prepacking';
const NO_SPINNING = 'session.intra_op.allow_spinning';

export interface AttributionSession {
  session: ort.InferenceSession;
  tensor: string;
  plan: InputPlan;
  /** Hand-made feeds for models whose inputs planInputs cannot classify (see createAttributionSession). */
  feeds?: FeedBuilder;
  /**
   * Rows of different lengths never share a run (no padding at all). Set for models with
   * GroupQueryAttention, whose kernel assumes each row's real tokens come first: left-padded
   * rows would get other values than the example alone.
   */
  unpadded: boolean;
  logits: string;
  padId: number;
  /** Width of the attributed tensor [batch, sequence, width]. */
  width: number;
  /**
   * The tensor is a flattening [batch·sequence, width] of [batch, sequence, width] (a Gemm MLP, as
   * in OPT exports): it is fed and read as [R·S, W], the same memory as [R, S, W] (flat-site.ts).
   */
  flat: boolean;
  /** Last dim of the logits. */
  vocab: number;
  /** Backward graph size, for reports. */
  pathNodes: number;
  /** Nodes before the logits that run at the last position only (0: none; onnx/backward/last-position.ts). */
  tailNodes: number;
  backwardNodes: number;
  /** Where the graph came from: the cache ('hit'), built and cached ('miss'), built without a cache ('off'). */
  graphCache: 'hit' | 'miss' | 'off';
  /** The reverse sweep sits behind an If (onnx/backward/backward-branch.ts): runs fed FORWARD_ONLY_TARGET skip it. */
  backwardBranch: boolean;
  /** ONNX Runtime prepacks the constant MatMul weights (a packed copy beside the mapped ones; createAttributionSession's `prepack`). */
  prepacked: boolean;
  /**
   * A new ORT session of the same graph, for a caller that released `session` to free its mapped
   * weights: the model is not parsed, the cache not read and the probe and checks not run again.
   */
  reopen(): Promise<ort.InferenceSession>;
  /**
   * The integrand runs skip the α-independent prefix (onnx/backward/prefix-split.ts): a second
   * session of the suffix graph, fed the cut tensors the activation run fetches. Absent: every run
   * uses the full graph, and `prefixRefused` says why.
   */
  prefix?: PrefixSession;
  prefixRefused?: string;
}

export interface PrefixSession {
  session: ort.InferenceSession;
  /** Tensors fed from the activation run, each with its batch axis (null: fed once). */
  cut: CutTensor[];
  /** Inputs of the model the suffix reads itself (fed as the full graph's). */
  inputs: string[];
  prefixNodes: number;
  suffixNodes: number;
  reopen(): Promise<ort.InferenceSession>;
}

export async function createAttributionSession(
  model: string | OnnxModel,
  tensor: string,
  opts: { settings?: SessionSettings; padId?: number; externalDataDir?: string; feeds?: FeedBuilder; /** The inference session's input plan (padding side, past layout), when the caller has it. */ inputPlan?: InputPlan; /** Attribution graphs are cached here (graph-cache.ts). */ cacheDir?: string; /** false: the LM head and what precedes it run at every position (AttributionGraphOptions.lastPosition). */ lastPosition?: boolean; /** false: every run runs the reverse sweep (AttributionGraphOptions.backwardBranch). */ backwardBranch?: boolean; /** false: every run uses the full graph (no prefix split; AttributionSession.prefixRefused says so); 'always': split even where the prefix is small (graph-cache.ts MIN_PREFIX_SHARE). */ prefix?: boolean | 'always'; /** true: let ONNX Runtime prepack the constant MatMul weights (faster kernels, a packed copy of those weights held in memory; the pipeline turns it on when its budget holds the copy, pipelines/budget.ts). Default false. */ prepack?: boolean } = {},
): Promise<AttributionSession> {
  const m = typeof model === 'string' ? readOnnxModel(model) : model;
  try {
    // The probe runs the model once: with the inference plan it is fed as the run feeds it.
    const inputPlan = opts.inputPlan;
    const backwardBranch = opts.backwardBranch ?? true;
    const probeFeeds: FeedBuilder | undefined = opts.feeds ?? (inputPlan ? (batch, padId) => buildFeeds(inputPlan, batch, padId) : undefined);
    // With a cache dir, the graph is built once per (model content, tensor, builder) (graph-cache.ts).
    const { bytes, info, cache, suffix } = await cachedAttributionGraph(m, { layerTensors: [tensor], externalDataDir: opts.externalDataDir, feeds: probeFeeds, lastPosition: opts.lastPosition, backwardBranch, prefix: opts.prefix }, opts.cacheDir);
    const shape = info.tensorMeta.shape;
    const flat = isFlatSite(info.tensorMeta);
    if ((shape.length !== 3 && !flat) || info.tensorMeta.type !== 'float32') {
      throw new QuantlensError('UNSUPPORTED', `LIG needs a float32 [batch, sequence, width] activation (or its [batch·sequence, width] flattening); "${tensor}" is ${info.tensorMeta.type} [${shape.join(', ')}] on the probe batch`);
    }
    // Prepacking copies every constant MatMul weight into ORT's own layout; without it the weights
    // the graph references stay the model file's mapped pages (weight-references.ts). The copy
    // buys faster kernels (measured +1–22 %, most on the larger models), so it is the caller's
    // choice by memory: the pipeline prepacks when its budget holds the copy.
    const settings = opts.settings ?? defaultSessionSettings();
    const externalDataDir = externalDataDirOf(m, opts);
    const prepacked = opts.prepack ?? false;
    const extra = prepacked ? settings.extra : { [NO_PREPACKING]: '1', ...settings.extra };
    // With a prefix split the suffix session runs the integrand rows and holds the packed copy; the
    // full graph (activation and top-1 runs) stays unpacked, so no weight is packed twice. Its
    // threads do not spin after a run either: they would take the cores from the suffix run that
    // follows (each session has its own pool; measured 0.85× → 1.3× on stories260K at 2 threads).
    const fullExtra = info.prefix ? { [NO_PREPACKING]: '1', [NO_SPINNING]: '0', ...settings.extra } : extra;
    const reopen = () => createSession(bytes, { ...settings, extra: fullExtra }, { externalDataDir, where: `attribution graph for ${tensor}` });
    const session = await reopen();
    let prefix: PrefixSession | undefined;
    if (info.prefix && suffix) {
      const reopenSuffix = () => createSession(suffix, { ...settings, extra }, { externalDataDir, where: `attribution suffix graph for ${tensor}` });
      prefix = { session: await reopenSuffix().catch(async (e) => { await session.release(); throw e; }), cut: info.prefix.cut, inputs: info.prefix.inputs, prefixNodes: info.prefix.prefixNodes, suffixNodes: info.prefix.suffixNodes, reopen: reopenSuffix };
    }
    const ours = new Set([overrideName(tensor), TARGET_INPUT]);
    const metadata = (session.inputMetadata as readonly { name: string }[]).filter((x) => !ours.has(x.name));
    // With hand-made feeds the plan is unused (its inputs may be ones planInputs refuses).
    const plan = opts.feeds ? { idsName: 'input_ids', idsType: 'int64' as const, pastInputs: [] } : opts.inputPlan ?? planInputs({ inputMetadata: metadata } as unknown as Pick<ort.InferenceSession, 'inputMetadata'>);
    const s: AttributionSession = { session, tensor, plan, feeds: opts.feeds, unpadded: info.unpadded, logits: info.logits, padId: opts.padId ?? 0, width: shape[shape.length - 1], flat, vocab: info.logitsShape[2], pathNodes: info.pathNodes, tailNodes: info.tailNodes ?? 0, backwardNodes: info.backwardNodes, graphCache: cache, backwardBranch, prepacked, reopen, prefix, prefixRefused: prefix ? undefined : info.prefixRefused ?? 'no prefix split in the cached graph' };
    if (flat) {
      const original = async (rows: Int32Array[]) => (await runRows(s, rows, rows.map((r) => r.length), rows[0].length, null, new Array(rows.length).fill(0), [originalName(tensor)]))[originalName(tensor)].data as Float32Array;
      await checkBatchMajor(s, original).catch(async (e) => {
        await releaseAttributionSession(s);
        throw e;
      });
    }
    return s;
  } finally {
    if (typeof model === 'string') m.source.close();
  }
}

/** Releases an attribution session's ORT sessions: the full graph's and, with a prefix split, the suffix's. */
export async function releaseAttributionSession(s: Pick<AttributionSession, 'session' | 'prefix'>): Promise<void> {
  await s.session.release();
  await s.prefix?.session.release();
}

/** The same attribution session with its ORT sessions opened again after releaseAttributionSession (graphs not rebuilt). */
export async function reopenAttributionSession(s: AttributionSession): Promise<AttributionSession> {
  const session = await s.reopen();
  return { ...s, session, ...(s.prefix ? { prefix: { ...s.prefix, session: await s.prefix.reopen() } } : {}) };
}

export interface LigOptions {
  /** Gauss–Legendre nodes (default 50). */
  steps?: number;
  baselineTokenId?: number;
  /** Objective token per example; default the model's own top-1 at the last position. */
  targets?: (number | undefined)[];
  /** Budget: rows·seqLen·max(width, vocab) elements per run (default 2^22); ignored when memoryBudgetBytes is set. */
  maxBatchElements?: number;
  /**
   * Budget in bytes per run: rows × seq × (activations + gradients [width each] + logits [vocab])
   * in float32 (`salience.memory_budget_gb`). Refused in one line when one row does not fit.
   */
  memoryBudgetBytes?: number;
  /** Warn when the completeness relative error exceeds this (default 0.05). */
  completenessThreshold?: number;
  /** Double steps until the error is below adaptiveTolerance (default 0.01), up to maxSteps (1024). */
  adaptiveSteps?: boolean;
  adaptiveTolerance?: number;
  maxSteps?: number;
  onWarning?: (message: string) => void;
}

export interface LigResult {
  /** Row-major [positions, width], positions = the example's real tokens in order. */
  attributions: Float32Array;
  positions: number;
  width: number;
  /** |Σ attr − (F_input − F_baseline)| / max(|F_input − F_baseline|, 1e-6). */
  completenessError: number;
  F_input: number;
  F_baseline: number;
  target: number;
  steps: number;
  /** completenessError within the threshold (adaptiveTolerance when adaptive). */
  converged: boolean;
  /** Every (steps, completenessError) tried for this example, in order (one entry unless adaptive). */
  history: { steps: number; completenessError: number }[];
}

interface Prepared {
  ids: Int32Array;
  len: number;
  aIn: Float32Array; // [S, W] of the padded batch row
  aBase: Float32Array;
  target: number;
  /** F at the input, when the top-1 run already computed it (its logits are the α = 1 row's). */
  fIn?: number;
}

const MIN_DELTA = 1e-6;

function intTensor(values: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values.map(BigInt)), [values.length]);
}

/** One example; see attributeBatch. */
export async function attributeExample(
  s: AttributionSession,
  example: { ids: Int32Array },
  layerTensor: string,
  opts: LigOptions & { target?: number } = {},
): Promise<LigResult> {
  const [r] = await attributeBatch(s, [example], layerTensor, { ...opts, targets: [opts.target ?? opts.targets?.[0]] });
  return r;
}

/** LIG for several examples at once (left-padded together; each row's math is independent). */
export async function attributeBatch(
  s: AttributionSession,
  examples: { ids: Int32Array }[],
  layerTensor: string,
  opts: LigOptions = {},
): Promise<LigResult[]> {
  if (layerTensor !== s.tensor) throw new QuantlensError('CONFIG', `attribution session is for "${s.tensor}", not "${layerTensor}"`);
  if (examples.length === 0) return [];
  if (s.unpadded && new Set(examples.map((e) => e.ids.length)).size > 1) return attributeByLength(s, examples, layerTensor, opts);
  const E = examples.length;
  const S = Math.max(...examples.map((e) => e.ids.length));
  const lengths = Int32Array.from(examples.map((e) => e.ids.length));
  const baseId = opts.baselineTokenId ?? 0;
  const baselineIds = examples.map((e) => new Int32Array(e.ids.length).fill(baseId));

  const W = s.width;
  const V = s.vocab;
  const rowsPerRun = attributionRowsPerRun(S, W, V, opts, s.prefix ? cutRowBytes(s.prefix.cut, S) : 0);
  // Layer outputs on inputs and baselines (`__original` does not depend on the override).
  const allIds = [...examples.map((e) => e.ids), ...baselineIds];
  const origData = new Float32Array(2 * E * S * W);
  // With a prefix split, the input rows' runs also fetch the cut tensors the suffix is fed.
  const cut = s.prefix ? new CutValues(s.prefix.cut, E, S) : undefined;
  for (let start = 0; start < 2 * E; start += rowsPerRun) {
    const n = Math.min(rowsPerRun, 2 * E - start);
    const cutFetches = cut && start < E ? s.prefix!.cut.map((c) => c.name) : [];
    const out = await runRows(s, allIds.slice(start, start + n), Array.from(allIds.slice(start, start + n), (x) => x.length), S, null, new Array(n).fill(0), [originalName(s.tensor), ...cutFetches]);
    origData.set(out[originalName(s.tensor)].data as Float32Array, start * S * W);
    if (cutFetches.length) cut!.take(out, start, Math.min(n, E - start));
  }
  const aIn = origData.subarray(0, E * S * W);
  const targets = examples.map((_, i) => opts.targets?.[i]);
  const fIn: (number | undefined)[] = new Array(E).fill(undefined);
  for (let start = 0; start < E && targets.some((t) => t === undefined); start += rowsPerRun) {
    // Top-1 of the unmodified model: logits with the override set to the layer's own output.
    const n = Math.min(rowsPerRun, E - start);
    const ov = aIn.slice(start * S * W, (start + n) * S * W);
    const out = await runRows(s, examples.slice(start, start + n).map((e) => e.ids), Array.from(lengths.subarray(start, start + n)), S, ov, new Array(n).fill(0), [s.logits]);
    const logits = out[s.logits].data as Float32Array;
    // [n, S, V], or [n, 1, V] when the graph computes the logits at the last position only.
    const [, So, Vo] = out[s.logits].dims as number[];
    for (let i = 0; i < n; i++) {
      if (targets[start + i] !== undefined) continue;
      const off = (i * So + So - 1) * Vo;
      let best = 0;
      for (let v = 1; v < Vo; v++) if (logits[off + v] > logits[off + best]) best = v;
      targets[start + i] = best;
      // With a prefix split this is the full graph's session (unpacked), the α rows the suffix's
      // (packed when asked): for float graphs the same numbers to ~1e-7 (prefix-split.test.ts);
      // exporter-quantized graphs, whose kernels differ more, are not split (graph-cache.ts).
      fIn[start + i] = logSoftmaxAt(logits.subarray(off, off + Vo), best);
    }
  }
  const prepared: Prepared[] = examples.map((e, i) => ({
    ids: e.ids,
    len: e.ids.length,
    aIn: origData.slice(i * S * W, (i + 1) * S * W),
    aBase: origData.slice((E + i) * S * W, (E + i + 1) * S * W),
    target: targets[i]!,
    fIn: fIn[i],
  }));

  const threshold = opts.completenessThreshold ?? 0.05;
  const tolerance = opts.adaptiveTolerance ?? 0.01;
  const maxSteps = opts.maxSteps ?? 1024;
  let steps = opts.steps ?? 50;
  const results = await integrate(s, prepared, S, W, steps, rowsPerRun, cut);
  if (opts.adaptiveSteps) {
    let pending = results.map((r, i) => (r.completenessError > tolerance ? i : -1)).filter((i) => i >= 0);
    while (pending.length && steps < maxSteps) {
      steps = Math.min(maxSteps, steps * 2);
      const again = await integrate(s, pending.map((i) => prepared[i]), S, W, steps, rowsPerRun, cut?.subset(pending));
      pending.forEach((i, k) => (results[i] = { ...again[k], history: [...results[i].history, ...again[k].history] }));
      pending = pending.filter((i) => results[i].completenessError > tolerance);
    }
  }
  const limit = opts.adaptiveSteps ? tolerance : threshold;
  const warn = opts.onWarning ?? ((m: string) => console.warn(m));
  return results.map((r, i): LigResult => {
    const converged = r.completenessError <= limit;
    if (r.completenessError > threshold) {
      warn(`LIG completeness error ${(100 * r.completenessError).toFixed(2)}% > ${(100 * threshold).toFixed(0)}% for batch row ${i} at ${r.steps} steps (${s.tensor})`);
    }
    return { ...r, converged };
  });
}

/**
 * LIG for examples of mixed lengths, grouped by exact length: every row of an ONNX Runtime run
 * has the same number of real tokens, so nothing is spent on padding (an inference batch padded
 * to its longest prompt would make every (example, α) row pay for the longest), and each result
 * is the per-example computation itself, not a left-padded variant of it. Rows still batch
 * across the examples of a group and across α, up to the memory budget (attributionRowsPerRun).
 */
export async function attributeByLength(
  s: AttributionSession,
  examples: { ids: Int32Array }[],
  layerTensor: string,
  opts: LigOptions = {},
): Promise<LigResult[]> {
  const groups = new Map<number, number[]>();
  examples.forEach((e, i) => {
    const g = groups.get(e.ids.length);
    if (g) g.push(i);
    else groups.set(e.ids.length, [i]);
  });
  const out = new Array<LigResult>(examples.length);
  for (const len of [...groups.keys()].sort((a, b) => a - b)) {
    const idx = groups.get(len)!;
    const targets = opts.targets ? idx.map((i) => opts.targets![i]) : undefined;
    const rs = await attributeBatch(s, idx.map((i) => examples[i]), layerTensor, { ...opts, targets });
    idx.forEach((i, k) => (out[i] = rs[k]));
  }
  return out;
}

/** Rows (example × α) per ONNX Runtime run within the budget of `opts`, for sequences of S tokens. */
export function attributionRowsPerRun(S: number, W: number, V: number, opts: Pick<LigOptions, 'maxBatchElements' | 'memoryBudgetBytes'>, cutBytes = 0): number {
  if (opts.memoryBudgetBytes === undefined) return Math.max(1, Math.floor((opts.maxBatchElements ?? 1 << 22) / (S * Math.max(W, V) + cutBytes / 4)));
  const perRow = attributionRowBytes(S, W, V, cutBytes);
  const rows = Math.floor(opts.memoryBudgetBytes / perRow);
  if (rows < 1) {
    throw new QuantlensError('BUDGET', `attribution memory budget ${(opts.memoryBudgetBytes / 1024 ** 2).toFixed(1)} MiB (salience.memory_budget_gb) is below one row of ${S} tokens: ${(perRow / 1024 ** 2).toFixed(1)} MiB (activations and gradients of width ${W}, logits of vocab ${V}, float32${cutBytes ? `, ${(cutBytes / 1024 ** 2).toFixed(1)} MiB of fed prefix tensors` : ''})`);
  }
  return rows;
}

/** attributionRowBytes of a row of S tokens on this session (with its prefix split's fed cut tensors). */
export function sessionRowBytes(s: Pick<AttributionSession, 'width' | 'vocab' | 'prefix'>, S: number): number {
  return attributionRowBytes(S, s.width, s.vocab, s.prefix ? cutRowBytes(s.prefix.cut, S) : 0);
}

/**
 * Bytes of one attribution row of S tokens: activation + gradient [S × W] and logits [S × V],
 * float32, plus `cutBytes`, the row's copy of the prefix's cut tensors the suffix is fed
 * (onnx/backward/prefix-split.ts cutRowBytes; 0 without a prefix split).
 */
export function attributionRowBytes(S: number, W: number, V: number, cutBytes = 0): number {
  return S * (2 * W + V) * 4 + cutBytes;
}

/** log_softmax(logits)[t], in float64 (the objective the graph computes, from its logits). */
function logSoftmaxAt(logits: Float32Array, t: number): number {
  let max = -Infinity;
  for (const l of logits) if (l > max) max = l;
  let sum = 0;
  for (const l of logits) sum += Math.exp(l - max);
  return logits[t] - max - Math.log(sum);
}

async function runRows(
  s: AttributionSession,
  ids: Int32Array[],
  lengths: number[],
  S: number,
  override: Float32Array | null,
  targets: number[],
  fetches: string[],
): Promise<ort.InferenceSession.OnnxValueMapType> {
  const R = ids.length;
  const batch = { seqLen: S, lengths: Int32Array.from(lengths), ids };
  const feeds = s.feeds ? s.feeds(batch, s.padId) : buildFeeds(s.plan, batch, s.padId);
  // The activation run reads `__original`, which ignores the override: feed zeros of the right shape.
  const ov = override ?? new Float32Array(R * S * s.width);
  feeds[overrideName(s.tensor)] = new ort.Tensor('float32', ov, s.flat ? [R * S, s.width] : [R, S, s.width]);
  // Only forward outputs wanted: FORWARD_ONLY_TARGET makes the If around the reverse sweep skip it.
  const forwardOnly = s.backwardBranch && !fetches.includes(gradName(s.tensor));
  feeds[TARGET_INPUT] = intTensor(forwardOnly ? targets.map(() => FORWARD_ONLY_TARGET) : targets);
  return s.session.run(feeds, fetches);
}

/** An integrand run on the suffix graph: the model inputs it reads, the cut tensors of each row's example. */
async function runSuffix(
  s: AttributionSession,
  p: PrefixSession,
  ids: Int32Array[],
  lengths: number[],
  S: number,
  override: Float32Array,
  targets: number[],
  cutFeeds: Record<string, ort.Tensor>,
): Promise<ort.InferenceSession.OnnxValueMapType> {
  const R = ids.length;
  const batch = { seqLen: S, lengths: Int32Array.from(lengths), ids };
  const all = s.feeds ? s.feeds(batch, s.padId) : buildFeeds(s.plan, batch, s.padId);
  const feeds: Record<string, ort.Tensor> = { ...cutFeeds };
  for (const name of p.inputs) if (all[name]) feeds[name] = all[name];
  feeds[overrideName(s.tensor)] = new ort.Tensor('float32', override, s.flat ? [R * S, s.width] : [R, S, s.width]);
  feeds[TARGET_INPUT] = intTensor(targets);
  return p.session.run(feeds, [OBJECTIVE_OUTPUT, gradName(s.tensor)]);
}

async function integrate(
  s: AttributionSession,
  prepared: Prepared[],
  S: number,
  W: number,
  steps: number,
  chunk: number,
  cut?: CutValues,
): Promise<Omit<LigResult, 'converged'>[]> {
  const { nodes, weights } = gaussLegendre(steps);
  // Row queue: (example, α, weight); weight < 0 marks the endpoint rows (α = 0 → F_base, 1 → F_in).
  const rows: { e: number; alpha: number; weight: number }[] = [];
  prepared.forEach((_, e) => {
    rows.push({ e, alpha: 0, weight: -1 });
    // The top-1 run had the input's logits (override = a_in): F_input is known, no α = 1 row.
    if (prepared[e].fIn === undefined) rows.push({ e, alpha: 1, weight: -1 });
    for (let k = 0; k < steps; k++) rows.push({ e, alpha: nodes[k], weight: weights[k] });
  });
  const sums = prepared.map(() => new Float64Array(S * W));
  const fIn = Float64Array.from(prepared, (p) => p.fIn ?? 0);
  const fBase = new Float64Array(prepared.length);
  for (let start = 0; start < rows.length; start += chunk) {
    const part = rows.slice(start, start + chunk);
    const R = part.length;
    const ov = new Float32Array(R * S * W);
    part.forEach((row, r) => {
      const p = prepared[row.e];
      const off = r * S * W;
      for (let j = 0; j < S * W; j++) ov[off + j] = p.aBase[j] + row.alpha * (p.aIn[j] - p.aBase[j]);
    });
    const ids = part.map((row) => prepared[row.e].ids);
    const lens = part.map((row) => prepared[row.e].len);
    const targets = part.map((row) => prepared[row.e].target);
    const out = cut && s.prefix
      ? await runSuffix(s, s.prefix, ids, lens, S, ov, targets, cut.feeds(part.map((row) => row.e)))
      : await runRows(s, ids, lens, S, ov, targets, [OBJECTIVE_OUTPUT, gradName(s.tensor)]);
    const F = out[OBJECTIVE_OUTPUT].data as Float32Array;
    const G = out[gradName(s.tensor)].data as Float32Array;
    part.forEach((row, r) => {
      if (row.weight < 0) {
        (row.alpha === 0 ? fBase : fIn)[row.e] = F[r];
        return;
      }
      const acc = sums[row.e];
      const off = r * S * W;
      for (let j = 0; j < S * W; j++) acc[j] += row.weight * G[off + j];
    });
  }
  return prepared.map((p, e) => {
    const first = S - p.len;
    const attributions = new Float32Array(p.len * W);
    let total = 0;
    for (let pos = 0; pos < p.len; pos++) {
      for (let n = 0; n < W; n++) {
        const j = (first + pos) * W + n;
        const v = (p.aIn[j] - p.aBase[j]) * sums[e][j];
        attributions[pos * W + n] = v;
        total += v;
      }
    }
    const delta = fIn[e] - fBase[e];
    const completenessError = Math.abs(total - delta) / Math.max(Math.abs(delta), MIN_DELTA);
    return {
      attributions,
      positions: p.len,
      width: W,
      completenessError,
      history: [{ steps, completenessError }],
      F_input: fIn[e],
      F_baseline: fBase[e],
      target: p.target,
      steps,
    };
  });
}
