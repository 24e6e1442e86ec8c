/**
 * Inference: every batch runs on every precision's session, in order, with the same feeds.
 * Only the predicted position's logits and the captured activations are fetched from ORT.
 * Emits one BatchResult per batch, so cross-precision measures see aligned data.
 */
import ort from 'onnxruntime-node';
import { concatMap, type OperatorFunction } from 'rxjs';
import type { ActivationChunk, Batch, BatchMoments, PredictionBatch } from '../core/types.ts';
import { activationChunk } from './chunk.ts';
import { buildFeeds, rowStart, type FeedBatch, type InputPlan } from '../onnx/feeds.ts';
import { LAST_INDEX, LAST_LOGITS } from '../onnx/augment.ts';
import type { BlockMoments } from '../onnx/block-moments.ts';
import { halfToFloat } from '../onnx/dtypes.ts';
import type { ActivationSite } from '../onnx/capture.ts';

export interface PrecisionRunner {
  precision: string;
  session: ort.InferenceSession;
  plan: InputPlan;
  /** Sites whose activations are fetched as chunks. */
  sites: ActivationSite[];
  /** Batch moments computed inside the graph (onnx/block-moments.ts), when no measure needs chunks. */
  moments?: BlockMoments;
  /** Also fetch the model's full logits [B, T, V] (only `measure: perplexity` asks for them). */
  fullLogits?: string;
  /** Nothing reads the prompt pass (loglik scoring, no activation measure): skip it (pipelines/plan.ts). */
  skipPromptPass?: boolean;
}

export interface PrecisionOutput {
  precision: string;
  prediction: PredictionBatch;
  chunks: ActivationChunk[];
  moments: BatchMoments[];
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

/**
 * Every feed one run of the runner's session needs: the model's own inputs, plus the inputs
 * quantlens appended (the in-graph moments' row lengths, the per-row last-real-position index the
 * augmented graph gathers logits at: augment.ts).
 */
export function runnerFeeds(runner: PrecisionRunner, rows: FeedBatch, padId: number): Record<string, ort.Tensor> {
  const { lengths, seqLen } = rows;
  const feeds = { ...buildFeeds(runner.plan, rows, padId), ...runner.moments?.feeds({ lengths, seqLen, padSide: runner.plan.padSide }) };
  if (runner.session.inputNames.includes(LAST_INDEX)) {
    const last = (len: number, b: number) => BigInt(b * seqLen + rowStart(runner.plan, seqLen, len) + len - 1);
    feeds[LAST_INDEX] = new ort.Tensor('int64', BigInt64Array.from(lengths, last), [lengths.length]);
  }
  return feeds;
}

/** runnerFeeds for a batch of the stream. */
export function batchFeeds(runner: PrecisionRunner, batch: Batch, padId: number): Record<string, ort.Tensor> {
  return runnerFeeds(runner, { seqLen: batch.seqLen, lengths: batch.lengths, ids: batch.examples.map((e) => e.ids) }, padId);
}

/** The captured activations of `sites` in one run's outputs, as chunks of the batch. */
export function activationChunksOf(runner: PrecisionRunner, sites: readonly ActivationSite[], out: Record<string, ort.Tensor>, batch: Batch): ActivationChunk[] {
  return sites.map((s) => {
    const t = out[s.capture ?? s.tensor];
    return activationChunk({ data: t.data as Float32Array | Uint16Array, dims: t.dims, batch, precision: runner.precision, layer: s.layer, tensor: s.tensor, padSide: runner.plan.padSide });
  });
}

export async function runBatch(runner: PrecisionRunner, batch: Batch, padId: number): Promise<PrecisionOutput> {
  if (runner.skipPromptPass) return skippedPass(runner, batch);
  const feeds = batchFeeds(runner, batch, padId);
  const fetches = [LAST_LOGITS, ...runner.sites.map((s) => s.capture ?? s.tensor)];
  if (runner.fullLogits) fetches.push(runner.fullLogits);
  if (runner.moments) fetches.push(...runner.moments.fetches());
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
  const chunks = activationChunksOf(runner, runner.sites, out, batch);
  const moments = runner.moments?.read(out, batch.realTokens, runner.precision) ?? [];
  const allLogits = runner.fullLogits ? asFloat32(out[runner.fullLogits]) : undefined;
  return { precision: runner.precision, prediction, chunks, moments, seconds, allLogits };
}

/** The output of a prompt pass nobody reads: ids and gold for scoring, no logits, no activations. */
function skippedPass(runner: PrecisionRunner, batch: Batch): PrecisionOutput {
  const prediction: PredictionBatch = {
    batchIndex: batch.index,
    precision: runner.precision,
    exampleIds: Int32Array.from(batch.examples, (e) => e.example_id),
    gold: batch.examples.map((e) => e.gold),
    logits: new Float32Array(0),
    vocab: 0,
  };
  return { precision: runner.precision, prediction, chunks: [], moments: [], seconds: 0 };
}

export function infer(runners: PrecisionRunner[], padId: number): OperatorFunction<Batch, BatchResult> {
  return concatMap(async (batch) => {
    const outputs: PrecisionOutput[] = [];
    for (const r of runners) outputs.push(await runBatch(r, batch, padId));
    return { batch, outputs };
  });
}
