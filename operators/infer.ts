/**
 * Inference: every batch runs on every precision's session, in order, with the same feeds.
 * Only the predicted position's logits and the captured activations are fetched from ORT.
 * Emits one BatchResult per batch, so cross-precision measures see aligned data.
 */
import ort from 'onnxruntime-node';
import { concatMap, type OperatorFunction } from 'rxjs';
import type { ActivationChunk, Batch, PredictionBatch } from '../core/types.ts';
import { activationChunk } from './chunk.ts';
import { buildFeeds, type InputPlan } from '../onnx/feeds.ts';
import { LAST_LOGITS } from '../onnx/augment.ts';
import { momentStatsNames, NEAR_HI, NEAR_LO } from '../onnx/moment-stats.ts';
import { halfToFloat } from '../onnx/dtypes.ts';
import type { ActivationSite } from '../onnx/capture.ts';

export interface PrecisionRunner {
  precision: string;
  session: ort.InferenceSession;
  plan: InputPlan;
  /** Sites whose activations are fetched as chunks. */
  sites: ActivationSite[];
  /** Sites whose batch moments are computed inside the graph (moment-stats.ts), in this order. */
  momentSites: ActivationSite[];
  /** Near-zero bounds fed to the in-graph moments. */
  nearZero?: { lo: number; hi: number };
  /** The shift for a site's moments: near the running mean (set by the neurons measure). */
  momentShift?: (site: ActivationSite) => Float64Array;
  /** Also fetch the model's full logits [B, T, V] (only `measure: perplexity` asks for them). */
  fullLogits?: string;
}

/** A batch's moments of one captured tensor, reduced in the graph over real tokens. */
export interface MomentStats {
  site: ActivationSite;
  rows: number;
  shift: Float64Array;
  s1: Float64Array;
  s2: Float64Array;
  min: Float32Array;
  max: Float32Array;
  nearZero: Float64Array;
}

export interface PrecisionOutput {
  precision: string;
  prediction: PredictionBatch;
  chunks: ActivationChunk[];
  moments: MomentStats[];
  seconds: number;
  /** Row-major [B, seqLen, vocab] logits of every position, when the runner asked for them. */
  allLogits?: Float32Array;
}

export interface BatchResult {
  batch: Batch;
  outputs: PrecisionOutput[];
}

function asFloat32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return halfToFloat(t.data as Uint16Array);
  throw new Error(`expected float logits, got ${t.type}`);
}

/** Feeds for the inputs quantlens appended (in-graph moments): needed on every run of the session. */
export function extraFeeds(runner: PrecisionRunner, shifts?: Float64Array[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  if (!runner.momentSites.length) return feeds;
  feeds[NEAR_LO] = new ort.Tensor('float32', Float32Array.of(runner.nearZero?.lo ?? -0.1), []);
  feeds[NEAR_HI] = new ort.Tensor('float32', Float32Array.of(runner.nearZero?.hi ?? 0.1), []);
  runner.momentSites.forEach((s, k) => {
    const shift = shifts?.[k] ?? new Float64Array(s.width ?? 0);
    feeds[momentStatsNames(k).shift] = new ort.Tensor('float64', shift, [shift.length]);
  });
  return feeds;
}

export async function runBatch(runner: PrecisionRunner, batch: Batch, padId: number): Promise<PrecisionOutput> {
  const feeds = buildFeeds(runner.plan, { seqLen: batch.seqLen, lengths: batch.lengths, ids: batch.examples.map((e) => e.ids) }, padId);
  const fetches = [LAST_LOGITS, ...runner.sites.map((s) => s.tensor)];
  if (runner.fullLogits) fetches.push(runner.fullLogits);
  const shifts = runner.momentSites.map((s) => Float64Array.from(runner.momentShift?.(s) ?? new Float64Array(s.width ?? 0)));
  Object.assign(feeds, extraFeeds(runner, shifts));
  runner.momentSites.forEach((_, k) => {
    const n = momentStatsNames(k);
    fetches.push(n.s1, n.s2, n.min, n.max, n.nearZero);
  });
  const t0 = performance.now();
  const out = await runner.session.run(feeds, fetches);
  const seconds = (performance.now() - t0) / 1000;
  const logitsT = out[LAST_LOGITS];
  const vocab = logitsT.dims[logitsT.dims.length - 1];
  const prediction: PredictionBatch = {
    batchIndex: batch.index,
    precision: runner.precision,
    exampleIds: Int32Array.from(batch.examples, (e) => e.example_id),
    gold: batch.examples.map((e) => e.gold),
    logits: asFloat32(logitsT),
    vocab,
  };
  const chunks = runner.sites.map((s) => {
    const t = out[s.tensor];
    return activationChunk({ data: t.data as Float32Array | Uint16Array, dims: t.dims, batch, precision: runner.precision, layer: s.layer, tensor: s.tensor });
  });
  const moments = runner.momentSites.map((site, k): MomentStats => {
    const n = momentStatsNames(k);
    return {
      site,
      rows: batch.realTokens,
      shift: shifts[k],
      s1: out[n.s1].data as Float64Array,
      s2: out[n.s2].data as Float64Array,
      min: out[n.min].data as Float32Array,
      max: out[n.max].data as Float32Array,
      nearZero: out[n.nearZero].data as Float64Array,
    };
  });
  const allLogits = runner.fullLogits ? asFloat32(out[runner.fullLogits]) : undefined;
  return { precision: runner.precision, prediction, chunks, moments, seconds, allLogits };
}

export function infer(runners: PrecisionRunner[], padId: number): OperatorFunction<Batch, BatchResult> {
  return concatMap(async (batch) => {
    const outputs: PrecisionOutput[] = [];
    for (const r of runners) outputs.push(await runBatch(r, batch, padId));
    return { batch, outputs };
  });
}
