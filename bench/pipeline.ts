/**
 * Pipeline throughput against a bare ONNX Runtime loop, and where a run's time goes.
 *
 * The bare loop is the ceiling: the SAME batches (the pipeline's own dataset → prompt → tokenize →
 * batchByTokens, built once up front), feeds built once with buildFeeds, a session with the same
 * settings and the pipeline's logits-only augmentation, and nothing but `session.run` fetching the
 * last-position logits. A second bare loop also fetches the captured activations, which splits
 * the gap into "capturing activations" and "everything the pipeline does with them".
 *
 * The breakdown comes from a separate, instrumented pipeline run: the bench wraps the estimator,
 * predictions-sink and RunMeasures methods with performance.now() (wrapMethod in lib.ts; the
 * pipeline's files are untouched) and sums session.run seconds from the onBatch hook. Inference
 * of batch k+1 may overlap the measures of batch k (two batches in flight), so the parts can sum
 * to more than the wall time; "other" is then negative and shown as overlap.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { parsePipeline } from '../pipelines/load.ts';
import { runPipeline } from '../pipelines/run.ts';
import { preparePlan, releasePlan } from '../pipelines/plan.ts';
import { batchesOf } from '../pipelines/assemble.ts';
import { RunMeasures } from '../pipelines/measures.ts';
import type { PipelineConfig } from '../pipelines/schema.ts';
import { buildFeeds } from '../onnx/feeds.ts';
import { lastIndexFeeds } from '../operators/infer.ts';
import { LAST_LOGITS } from '../onnx/augment.ts';
import { NeuronsEstimator } from '../operators/estimators/neurons.ts';
import { CorrelationEstimator } from '../operators/estimators/correlation.ts';
import { AgreementEstimator } from '../operators/estimators/agreement.ts';
import type { Batch } from '../core/types.ts';
import type { TokenizeStats } from '../operators/encode.ts';
import { ensureDemoModel } from '../sources/demo/demo-model.ts';
import { TimeAccount, median, roundRobin, wrapMethod, writeSyntheticJsonl, type SyntheticOptions } from './lib.ts';

export const PROMPT_TEMPLATE = 'Respond with True or False only.\\n{prompt}\\nAnswer:';

export interface BenchConfigOptions {
  /** Model folder, or 'demo' / 'demo:bench'. */
  model: string;
  dataset: string;
  output: string;
  measure: string[];
  precisions?: string[];
  layers?: string[];
}

/** A pipeline config built the way a user would write it: YAML text through the real parser. */
export function benchConfig(o: BenchConfigOptions, yamlPath: string): PipelineConfig {
  const yaml = [
    'name: bench',
    `model: ${JSON.stringify(o.model)}`,
    `precisions: [${(o.precisions ?? ['fp32']).join(', ')}]`,
    'dataset:',
    `  path: ${JSON.stringify(o.dataset)}`,
    `  prompt: "${PROMPT_TEMPLATE}"`,
    `layers: [${(o.layers ?? ['first', 'middle', 'last']).join(', ')}]`,
    `measure: [${o.measure.join(', ')}]`,
    `output: ${JSON.stringify(o.output)}`,
    '',
  ].join('\n');
  return parsePipeline(yaml, yamlPath);
}

export interface InstrumentedRun {
  /** runPipeline from call to return, seconds. */
  totalSeconds: number;
  /** The pipeline's own streaming window (summary.wall_seconds): first pull to last batch. */
  streamSeconds: number;
  /** Everything after the last batch: close predictions, estimator finish, tables, calibration, summary. */
  afterStreamSeconds: number;
  /** Sum of session.run seconds over every batch and precision. */
  inferenceSeconds: number;
  tokensPerSecond: number;
  tokens: number;
  examples: number;
  paddingEfficiency: number;
  /** Wrapped-method milliseconds by category (update:*, finish:*, sink:*, measures:*). */
  ms: Record<string, number>;
}

/** Time the categories of one run by wrapping methods for its duration (restored afterwards). */
export async function runInstrumented(cfg: PipelineConfig, opts: { cacheDir?: string } = {}): Promise<InstrumentedRun> {
  const account = new TimeAccount();
  const restores = [
    wrapMethod(NeuronsEstimator.prototype, 'update', account, 'update:neurons'),
    wrapMethod(CorrelationEstimator.prototype, 'update', account, 'update:correlation'),
    wrapMethod(AgreementEstimator.prototype, 'update', account, 'update:agreement'),
    wrapMethod(NeuronsEstimator.prototype, 'finish', account, 'finish:neurons'),
    wrapMethod(CorrelationEstimator.prototype, 'finish', account, 'finish:correlation'),
    wrapMethod(AgreementEstimator.prototype, 'finish', account, 'finish:agreement'),
    wrapMethod(RunMeasures.prototype, 'update', account, 'measures:update'),
    wrapMethod(RunMeasures.prototype, 'finish', account, 'measures:finish'),
    wrapMethod(RunMeasures.prototype, 'closePredictions', account, 'sink:close'),
  ];
  // The predictions sink is created inside open() (and again by rotatePredictions() at each
  // checkpoint); wrap each new instance's append as it appears.
  const wrapped = new WeakSet<object>();
  const wrapSink = (measures: RunMeasures) => {
    const sink = (measures as unknown as { predictions?: Record<string, unknown> }).predictions;
    if (sink && typeof sink.append === 'function' && !wrapped.has(sink)) {
      wrapped.add(sink);
      wrapMethod(sink, 'append', account, 'sink:append');
    }
  };
  for (const method of ['open', 'rotatePredictions']) {
    const proto = RunMeasures.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const original = proto[method];
    if (typeof original !== 'function') continue;
    proto[method] = async function (this: RunMeasures, ...args: unknown[]) {
      const t0 = performance.now();
      const r = await original.apply(this, args);
      if (method === 'rotatePredictions') account.add('sink:rotate', performance.now() - t0);
      wrapSink(this);
      return r;
    };
    restores.push(() => {
      proto[method] = original;
    });
  }
  // Checkpoints (pipelines/checkpoint.ts) write estimator states every checkpoint_every batches.
  const checkpoint = await import('../pipelines/checkpoint.ts').catch(() => null);
  const ckProto = (checkpoint as { RunCheckpoints?: { prototype: object } } | null)?.RunCheckpoints?.prototype;
  if (ckProto && typeof (ckProto as Record<string, unknown>).afterBatch === 'function') restores.push(wrapMethod(ckProto, 'afterBatch', account, 'checkpoint:afterBatch'));
  let inference = 0;
  let lastBatchAt = 0;
  try {
    const t0 = performance.now();
    const { summary } = await runPipeline(cfg, {
      quiet: true,
      report: false,
      log: () => undefined,
      cacheDir: opts.cacheDir,
      onBatch: (r) => {
        for (const o of r.outputs) inference += o.seconds;
        lastBatchAt = performance.now();
      },
    });
    const t1 = performance.now();
    return {
      totalSeconds: (t1 - t0) / 1000,
      streamSeconds: summary.wall_seconds,
      afterStreamSeconds: (t1 - lastBatchAt) / 1000,
      inferenceSeconds: inference,
      tokensPerSecond: summary.tokens_per_second,
      tokens: Object.values(summary.precisions as Record<string, { tokens: number }>)[0].tokens,
      examples: summary.dataset.examples,
      paddingEfficiency: summary.padding_efficiency,
      ms: Object.fromEntries(account.ms),
    };
  } finally {
    for (const r of restores.reverse()) r();
  }
}

export interface ThroughputOptions {
  prompts: number;
  rounds: number;
  /** Scratch folder (datasets, outputs). */
  tmpDir: string;
  words?: SyntheticOptions;
  log?: (line: string) => void;
}

export interface ThroughputRound {
  order: string[];
  pipelineTokensPerSecond: number;
  bareTokensPerSecond: number;
  bareCaptureTokensPerSecond: number;
  ratio: number;
  ratioToCapture: number;
}

export interface ThroughputResult {
  model: { dir: string; hiddenSize: number; intermediateSize: number; layers: number };
  prompts: number;
  batches: number;
  tokens: number;
  capturedLayers: number[];
  measures: string[];
  rounds: ThroughputRound[];
  medianRatio: number;
  medianRatioToCapture: number;
  goal: number;
  breakdown: InstrumentedRun;
}

async function bareLoop(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>[], fetches: string[]): Promise<number> {
  const t0 = performance.now();
  for (const f of feeds) await session.run(f, fetches);
  return (performance.now() - t0) / 1000;
}

export async function benchPipelineThroughput(opts: ThroughputOptions): Promise<ThroughputResult> {
  const log = opts.log ?? (() => undefined);
  const modelDir = await ensureDemoModel({ size: 'bench' });
  const dataset = path.join(opts.tmpDir, `throughput-${opts.prompts}.jsonl`);
  await writeSyntheticJsonl(dataset, opts.prompts, opts.words ?? { minWords: 3, maxWords: 30, seed: 7 });
  const output = path.join(opts.tmpDir, 'out-throughput');
  const measures = ['predictions', 'neurons'];
  const cfg = benchConfig({ model: 'demo:bench', dataset, output, measure: measures }, path.join(opts.tmpDir, 'throughput.yaml'));

  // Bare loops: one session without captures (fetch logits only), one with the same captures as the pipeline.
  const barePlan = await preparePlan({ ...cfg, measure: ['predictions'] });
  // A session that fetches the captured activations (as any measure needing every value does).
  const capturePlan = await preparePlan({ ...cfg, measure: ['predictions', 'correlation'] });
  try {
    const stats: TokenizeStats = { examples: 0, truncated: 0, tokens: 0 };
    const batches: Batch[] = [];
    for await (const b of batchesOf(barePlan, stats)) batches.push(b);
    const padId = barePlan.tokenizer.padId;
    const bare = barePlan.runners[0];
    const capture = capturePlan.runners[0];
    const feeds = batches.map((b) => ({ ...buildFeeds(bare.plan, { seqLen: b.seqLen, lengths: b.lengths, ids: b.examples.map((e) => e.ids) }, padId), ...lastIndexFeeds(bare, b.lengths, b.seqLen) }));
    const tokens = batches.reduce((s, b) => s + b.realTokens, 0);
    const captureFetches = [LAST_LOGITS, ...capture.sites.map((s) => s.tensor)];
    const graph = capturePlan.folder.config as Record<string, any>;
    log(`throughput: ${opts.prompts} prompts → ${batches.length} batches, ${tokens} tokens; ${opts.rounds} rounds of pipeline / bare / bare+capture`);

    const rounds = await roundRobin<number>(opts.rounds, {
      pipeline: async () => {
        rmSync(output, { recursive: true, force: true });
        const { summary } = await runPipeline(cfg, { quiet: true, report: false, log: () => undefined });
        const t = summary.precisions.fp32.tokens;
        if (t !== tokens) throw new Error(`pipeline saw ${t} tokens, the bare loop's batches hold ${tokens}: not the same batches`);
        return summary.tokens_per_second as number;
      },
      bare: async () => tokens / (await bareLoop(bare.session, feeds, [LAST_LOGITS])),
      'bare+capture': async () => tokens / (await bareLoop(capture.session, feeds, captureFetches)),
    });
    const perRound: ThroughputRound[] = rounds.map(({ order, results }) => ({
      order,
      pipelineTokensPerSecond: results.pipeline,
      bareTokensPerSecond: results.bare,
      bareCaptureTokensPerSecond: results['bare+capture'],
      ratio: results.pipeline / results.bare,
      ratioToCapture: results.pipeline / results['bare+capture'],
    }));
    for (const r of perRound) log(`  round [${r.order.join(', ')}]: pipeline ${r.pipelineTokensPerSecond.toFixed(0)} tok/s, bare ${r.bareTokensPerSecond.toFixed(0)}, bare+capture ${r.bareCaptureTokensPerSecond.toFixed(0)}`);

    rmSync(output, { recursive: true, force: true });
    const breakdown = await runInstrumented(cfg);
    rmSync(output, { recursive: true, force: true });
    return {
      model: {
        dir: modelDir,
        hiddenSize: Number(graph.hidden_size),
        intermediateSize: Number(graph.intermediate_size),
        layers: Number(graph.num_hidden_layers),
      },
      prompts: opts.prompts,
      batches: batches.length,
      tokens,
      capturedLayers: capturePlan.sites.map((s) => s.layer),
      measures,
      rounds: perRound,
      medianRatio: median(perRound.map((r) => r.ratio)),
      medianRatioToCapture: median(perRound.map((r) => r.ratioToCapture)),
      goal: 0.9,
      breakdown,
    };
  } finally {
    await releasePlan(barePlan);
    await releasePlan(capturePlan);
  }
}
