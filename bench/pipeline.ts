/**
 * Pipeline throughput against a bare ONNX Runtime loop, on the demo bench model, a larger
 * generated Llama and one of TinyLlama's layer shape (bench/pipeline-models.ts), and where a
 * run's time goes.
 *
 * The bare loop is the ceiling: the SAME batches (the pipeline's own dataset → prompt → tokenize →
 * batchByTokens, built once up front), feeds built once, a session with the same settings and the
 * pipeline's logits-only augmentation, and nothing but `session.run` fetching the last-position
 * logits. The pipeline's own session (with the in-graph statistics) runs the same loop right
 * after or before it: the difference of the two is the statistics' cost, measured, not inferred.
 * Rounds rotate the pipeline and the two loops (roundRobin), since the machine is shared. Each
 * loop runs one session alone, as the pipeline does: alternating the two sessions batch by batch
 * (how this bench first paired them) slowed both by 15–25 % on the demo model (its weights and
 * arenas fit the cache once, not twice), which flattered pipeline ÷ bare.
 *
 * Where the time goes comes from a separate run with a StageClock (operators/stage-clock.ts):
 * the graph's own stage boundaries timed by `tap` and by timing each iterator stage's next(),
 * with one batch in flight so the stages split the stream exactly (pipeline-stages.ts).
 *
 * runInstrumented (method wrapping) stays for bench/estimators.ts, which apportions estimators.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { runPipeline } from '../pipelines/run.ts';
import { benchConfig } from './bench-config.ts';
import { preparePlan, releasePlan } from '../pipelines/plan.ts';
import { batchesOf } from '../pipelines/assemble.ts';
import { RunMeasures } from '../pipelines/measures.ts';
import type { PipelineConfig } from '../pipelines/schema.ts';
import { batchFeeds, type PrecisionRunner } from '../operators/infer.ts';
import { LAST_LOGITS } from '../onnx/augment.ts';
import { NeuronsEstimator } from '../operators/estimators/neurons.ts';
import { CorrelationEstimator } from '../operators/estimators/correlation.ts';
import { AgreementEstimator } from '../operators/estimators/agreement.ts';
import type { Batch } from '../core/types.ts';
import { benchGoal, TimeAccount, median, roundRobin, wrapMethod, writeSyntheticJsonl, type BenchGoal, type SyntheticOptions } from './lib.ts';
import { demoBenchModel, largeBenchModel, realisticBenchModel, type PipelineBenchModel } from './pipeline-models.ts';
import { stageBreakdown, type StageBreakdown } from './pipeline-stages.ts';
import { profileStatistics, type StatisticsProfile } from './pipeline-profile.ts';
import { benchEndOfRun, type EndOfRunResult } from './end-of-run.ts';

export { benchConfig, PROMPT_TEMPLATE, type BenchConfigOptions } from './bench-config.ts';

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
  /** Prompts for the demo bench model; the larger model gets a quarter (its forward pass is ~12× dearer), in smaller batches (LARGE_MAX_TOKENS). */
  prompts: number;
  rounds: number;
  /** Scratch folder (datasets, outputs). */
  tmpDir: string;
  /** Prompt counts of the end-of-run measurement on the tiny demo model (end-of-run.ts). */
  endOfRunSizes: number[];
  words?: SyntheticOptions;
  log?: (line: string) => void;
}

export interface ThroughputRound {
  order: string[];
  pipelineTokensPerSecond: number;
  bareTokensPerSecond: number;
  /** The pipeline's own session (statistics in the graph) in a bare loop. */
  bareStatsTokensPerSecond: number;
  ratio: number;
  /** Bare ÷ pipeline process CPU seconds (all threads) for the same tokens: less sensitive to other load than wall time. */
  cpuRatio: number;
  /** (bare+stats − bare) ÷ bare CPU seconds of their session.run calls, loops of the same round. */
  statsCpuOverhead: number;
}

export interface ModelThroughput {
  model: { label: string; dir: string; hiddenSize: number; intermediateSize: number; layers: number; parameters: number };
  prompts: number;
  batches: number;
  tokens: number;
  capturedLayers: number[];
  measures: string[];
  rounds: ThroughputRound[];
  medianRatio: number;
  medianCpuRatio: number;
  /** Median over rounds of (bare+stats seconds − bare seconds) ÷ bare seconds, loops of the same round. */
  statsOverhead: number;
  /** The same in CPU seconds. */
  statsCpuOverhead: number;
  stages: StageBreakdown;
  /** The statistics by part, from ORT's profile of the pipeline's session (pipeline-profile.ts). */
  statsProfile: StatisticsProfile;
}

export interface ThroughputResult {
  models: ModelThroughput[];
  endOfRun: EndOfRunResult;
  goal: number;
  goals: BenchGoal[];
}

export const PIPELINE_GOAL = 0.95;
export const MEASURES = ['predictions', 'neurons', 'dead'];
/** batch.max_tokens of the larger model's runs (the default is 4096: 150 prompts made 3 batches). */
export const LARGE_MAX_TOKENS = 320;

interface LoopTime {
  seconds: number;
  /** Process CPU seconds (user + system, every thread) during its session.run calls. */
  cpu: number;
}

/** Σ awaited session.run of one session over every batch, alone (wall and process CPU seconds). */
async function loop(s: { session: ort.InferenceSession; feeds: Record<string, ort.Tensor>[]; fetches: string[] }): Promise<LoopTime> {
  const acc = { seconds: 0, cpu: 0 };
  for (const f of s.feeds) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await s.session.run(f, s.fetches);
    acc.seconds += (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    acc.cpu += (c.user + c.system) / 1e6;
  }
  return acc;
}

/** Pipeline, bare and bare+statistics loops over the same batches, alternated, then the stage breakdown. */
export async function benchModelThroughput(bench: PipelineBenchModel, prompts: number, rounds: number, tmpDir: string, words: SyntheticOptions, log: (l: string) => void, maxTokens?: number): Promise<ModelThroughput> {
  const dataset = path.join(tmpDir, `throughput-${prompts}.jsonl`);
  await writeSyntheticJsonl(dataset, prompts, words);
  const output = path.join(tmpDir, 'out-throughput');
  const parsed = benchConfig({ model: bench.dir, dataset, output, measure: MEASURES }, path.join(tmpDir, 'throughput.yaml'));
  const cfg = maxTokens ? { ...parsed, batch: { ...parsed.batch, max_tokens: maxTokens } } : parsed;
  const barePlan = await preparePlan({ ...cfg, measure: ['predictions'] });
  const statsPlan = await preparePlan(cfg);
  try {
    const batches: Batch[] = [];
    for await (const b of batchesOf(barePlan, { examples: 0, truncated: 0, tokens: 0 })) batches.push(b);
    const padId = barePlan.tokenizer.padId;
    const bare = barePlan.runners[0];
    const stats = statsPlan.runners[0];
    // The bare plan has no in-graph statistics, so its feeds have none of their inputs.
    const feedsOf = (r: PrecisionRunner) => batches.map((b) => batchFeeds(r, b, padId));
    const bareFeeds = feedsOf(bare);
    const statsFeeds = feedsOf(stats);
    const statsFetches = [LAST_LOGITS, ...(stats.moments?.fetches() ?? [])];
    const tokens = batches.reduce((s, b) => s + b.realTokens, 0);
    log(`throughput, ${bench.label}: ${prompts} prompts → ${batches.length} batches, ${tokens} tokens; ${rounds} rounds of pipeline / bare / bare+stats`);
    const tasks: Record<'pipeline' | 'bare' | 'bare+stats', () => Promise<LoopTime>> = {
      pipeline: async () => {
        rmSync(output, { recursive: true, force: true });
        // CPU of the stream only: from the run's start line (plan, sessions and model hash done) to its last batch.
        let c0 = process.cpuUsage();
        let streamCpu = { user: 0, system: 0 };
        const { summary } = await runPipeline(cfg, { quiet: true, report: false, log: () => void (c0 = process.cpuUsage()), onBatch: () => void (streamCpu = process.cpuUsage(c0)) });
        const t = summary.precisions.fp32.tokens;
        if (t !== tokens) throw new Error(`pipeline saw ${t} tokens, the bare loop's batches hold ${tokens}: not the same batches`);
        return { seconds: tokens / (summary.tokens_per_second as number), cpu: (streamCpu.user + streamCpu.system) / 1e6 };
      },
      bare: () => loop({ session: bare.session, feeds: bareFeeds, fetches: [LAST_LOGITS] }),
      'bare+stats': () => loop({ session: stats.session, feeds: statsFeeds, fetches: statsFetches }),
    };
    // One unmeasured round first: the first pipeline run of a process also JIT-compiles the
    // tokenizer and the stream's JS (measured: its round came out 25–30 % slower than the others
    // in both full runs, whichever order followed), which the bare loop never pays.
    for (const task of Object.values(tasks)) await task();
    const results = await roundRobin<LoopTime>(rounds, tasks);
    const perRound: ThroughputRound[] = results.map(({ order, results: x }) => ({
      order,
      pipelineTokensPerSecond: tokens / x.pipeline.seconds,
      bareTokensPerSecond: tokens / x.bare.seconds,
      bareStatsTokensPerSecond: tokens / x['bare+stats'].seconds,
      ratio: x.bare.seconds / x.pipeline.seconds,
      cpuRatio: x.bare.cpu / x.pipeline.cpu,
      statsCpuOverhead: x['bare+stats'].cpu / x.bare.cpu - 1,
    }));
    for (const r of perRound) log(`  round [${r.order.join(', ')}]: pipeline ${r.pipelineTokensPerSecond.toFixed(0)} tok/s, bare ${r.bareTokensPerSecond.toFixed(0)}, bare+stats ${r.bareStatsTokensPerSecond.toFixed(0)}`);
    rmSync(output, { recursive: true, force: true });
    const stages = await stageBreakdown(cfg);
    rmSync(output, { recursive: true, force: true });
    const statsProfile = await profileStatistics(statsPlan, batches, tmpDir);
    return {
      model: { label: bench.label, dir: bench.dir, hiddenSize: bench.config.hiddenSize, intermediateSize: bench.config.intermediateSize, layers: bench.config.numLayers, parameters: bench.parameters },
      prompts,
      batches: batches.length,
      tokens,
      capturedLayers: statsPlan.sites.map((s) => s.layer),
      measures: MEASURES,
      rounds: perRound,
      medianRatio: median(perRound.map((r) => r.ratio)),
      medianCpuRatio: median(perRound.map((r) => r.cpuRatio)),
      statsOverhead: median(perRound.map((r) => r.bareTokensPerSecond / r.bareStatsTokensPerSecond - 1)),
      statsCpuOverhead: median(perRound.map((r) => r.statsCpuOverhead)),
      stages,
      statsProfile,
    };
  } finally {
    await releasePlan(barePlan);
    await releasePlan(statsPlan);
  }
}

export async function benchPipelineThroughput(opts: ThroughputOptions): Promise<ThroughputResult> {
  const log = opts.log ?? (() => undefined);
  const words = opts.words ?? { minWords: 3, maxWords: 30, seed: 7 };
  const models: ModelThroughput[] = [];
  models.push(await benchModelThroughput(await demoBenchModel(), opts.prompts, opts.rounds, opts.tmpDir, words, log));
  // The larger model's forward pass is ~12× dearer: a quarter of the prompts, in batches of at most
  // LARGE_MAX_TOKENS padded tokens (the default length-sorted batching, smaller batches), so a loop
  // is ≥ 20 batches, not 3, and one slow stretch of a shared machine moves a wall ratio less.
  models.push(await benchModelThroughput(await largeBenchModel(), Math.max(16, Math.round(opts.prompts / 4)), opts.rounds, opts.tmpDir, words, log, LARGE_MAX_TOKENS));
  // TinyLlama's layer shape (bench/pipeline-models.ts realisticConfig): ~30× the 51M model's
  // forward pass per token, so a twelfth of the prompts (600 → 50: 8 batches, ~2.2k tokens, ~4.5 s
  // a loop), and 2·rounds − 1 rounds: in two full runs of 5 its bare loop's tokens/s moved by up to
  // 30 % between rounds (366–533), and the per-round ratios spread 0.80–1.13 around medians of
  // 0.91 and 1.02; more rounds steady the median, not the rounds.
  models.push(await benchModelThroughput(await realisticBenchModel(), Math.max(16, Math.round(opts.prompts / 12)), 2 * opts.rounds - 1, opts.tmpDir, words, log, LARGE_MAX_TOKENS));
  const endOfRun = await benchEndOfRun({ sizes: opts.endOfRunSizes, tmpDir: opts.tmpDir, log });
  const goals = models.map((m) =>
    benchGoal(`pipeline ÷ bare session.run, ${m.model.label}`, m.medianRatio, '>=', PIPELINE_GOAL, `median of ${m.rounds.length} rounds; CPU-time ratio ${m.medianCpuRatio.toFixed(3)}; ${m.measures.join(' + ')} on layers ${m.capturedLayers.join(', ')}; in ORT's profile the statistics take ${(m.statsProfile.share * 100).toFixed(1)} % of the model's kernel time, float64 Σx + min/max alone ${(m.statsProfile.floorShare * 100).toFixed(1)} %`),
  );
  goals.push(endOfRun.goal);
  return { models, endOfRun, goal: PIPELINE_GOAL, goals };
}
