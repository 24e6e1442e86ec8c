/**
 * `quantlens run`: plan (validate and open everything) → stream the graph → finish estimators →
 * write Parquet files, summary.json and the report. Every file is written under a temporary name
 * and renamed when complete; on error or Ctrl-C the temporaries are removed.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { lastValueFrom, defaultIfEmpty, ReplaySubject } from 'rxjs';
import { QuantlensError } from '../core/errors.ts';
import { removePendingTemporaries, writeFileAtomically } from '../core/atomic-write.ts';
import type { PipelineConfig } from './schema.ts';
import { preparePlan, releasePlan, type Plan } from './plan.ts';
import { openDataset } from '../sources/dataset/open.ts';
import { assemble, batchesOf } from './assemble.ts';
import { RunMeasures } from './measures.ts';
import { Progress } from './progress.ts';
import { writeCalibration } from './calibration-output.ts';
import { releaseBootstrapWorker, warmBootstrapWorker } from '../operators/estimators/calibration-bootstrap-parallel.ts';
import type { TokenizeStats } from '../operators/encode.ts';
import type { BatchResult } from '../operators/infer.ts';
import type { StageClock } from '../operators/stage-clock.ts';
import { CHECKPOINT_FILE, RunCheckpoints, STATE_DIR, writeShardState } from './checkpoint.ts';
import { runTiming } from './ledger.ts';
import { datasetPath, modelRecord, precisionPath } from './output-metadata.ts';
import { abortOutput, beginOutput, endOutput } from './output-folder.ts';
import { memoryRecord } from './budget.ts';
import { runCorrelationPasses, startMainPass } from './correlation-passes.ts';
import { passesRecord } from './correlation-budget.ts';
import { runSaliencePass } from './salience-pass.ts';
import { salienceSchedule } from './salience.ts';

export interface RunOptions {
  shard?: { index: number; count: number };
  /** Continue from <output>/state/checkpoint.json when it exists (else start fresh). */
  resume?: boolean;
  quiet?: boolean;
  /** Total examples for the ETA when known (e.g. from dataset.limit). */
  total?: number | null;
  /** Write report.html (default true). */
  report?: boolean;
  cacheDir?: string;
  log?: (line: string) => void;
  /** Called after each batch is fully consumed (tests use it to sample memory or copy chunks). */
  onBatch?: (r: BatchResult, examplesSoFar: number) => void;
  /** Benchmarks: time the graph's stages (operators/stage-clock.ts), with this many batches in flight. */
  clock?: { clock: StageClock; inFlight: number };
}

export interface RunResult {
  outDir: string;
  summary: Record<string, any>;
}

export async function runPipeline(cfg: PipelineConfig, opts: RunOptions = {}): Promise<RunResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  // Its exact percentiles need every scored position of one process (value spills, not a mergeable state).
  if (cfg.measure.includes('perplexity') && (opts.shard || opts.resume))
    throw new QuantlensError('CONFIG', `not supported: measure perplexity with ${opts.shard ? '--shard' : '--resume'}`, cfg.file || 'measure');
  const plan = await preparePlan(cfg, { shard: opts.shard, cacheDir: opts.cacheDir });
  const outDir = opts.shard ? path.join(cfg.output, `shard-${opts.shard.index}-of-${opts.shard.count}`) : cfg.output;
  const created = !existsSync(outDir);
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw new QuantlensError('IO', `cannot create the output folder: ${(e as Error).message}`, outDir, { cause: e });
  }
  // Only after the plan is valid: a bad input never touches an older run's folder.
  await beginOutput(outDir);
  const measures = new RunMeasures(plan, outDir, undefined, log);
  let stopped = false;
  // Replayed: a Ctrl-C during set-up (attribution sessions take a while) must still stop the graph subscribed later.
  const stop$ = new ReplaySubject<void>(1);
  const onSignal = () => {
    stopped = true;
    stop$.next();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const stats: TokenizeStats = { examples: 0, truncated: 0, tokens: 0 };
  let total = opts.total ?? (cfg.dataset.limit && !opts.shard && !cfg.dataset.shard ? cfg.dataset.limit : null);
  // An ETA needs the record count: on a terminal, count it with one streaming pass (cheap next to inference).
  if (total === null && process.stderr.isTTY && !opts.quiet) {
    total = 0;
    for await (const _ of openDataset(plan.dataset)) total++;
  }
  log(`quantlens: ${cfg.name}: ${plan.demoLabel ? `${plan.demoLabel}, ` : ''}${plan.precisions.map((p) => p.precision).join(', ')}; layers ${plan.sites.map((s) => s.layer).join(', ')} → ${outDir}`);
  const progress = new Progress(total, { quiet: opts.quiet, phase: cfg.measure.includes('salience') && salienceSchedule(plan) === 'during' ? 'inference + attribution' : 'inference' });
  if (measures.salience) measures.salience.onProgress = (k, n) => progress.note(`attributing ${k}/${n} precision×layer of this batch`);
  let ck: RunCheckpoints | undefined;
  try {
    ck = RunCheckpoints.open(plan, outDir, measures, { resume: opts.resume, log });
    const checkpoints = ck;
    await measures.open(ck.predictionsFile(), ck.predictionsAlongside());
    startMainPass(plan, measures);
    const graph = assemble(
      plan,
      ck.skipDone(batchesOf(plan, stats, opts.clock?.clock)),
      async (r) => {
        await measures.update(r);
        await checkpoints.afterBatch(r);
        progress.tick(r.batch.examples.length, r.batch.realTokens);
        opts.onBatch?.(r, progress.examples);
      },
      { stop$, clock: opts.clock?.clock, inFlight: opts.clock?.inFlight },
    );
    await lastValueFrom(graph.pipe(defaultIfEmpty(null)));
    if (stopped) throw new QuantlensError('INTERRUPTED', 'interrupted; no result files were written');
    if (stats.examples === 0) throw new QuantlensError('DATASET', 'the dataset has no records (after skip/limit/shard)', plan.dataset.path);
    progress.done();
    const passSeconds = await runCorrelationPasses(plan, measures, ck, { stopped: () => stopped, log, spill: !!opts.shard, total: stats.examples, quiet: opts.quiet });
    const saliencePassSeconds = await runSaliencePass(plan, measures, ck, { stopped: () => stopped, log, quiet: opts.quiet });
    const timing = runTiming(ck.ledger);
    // Captured before finish(), written after every output: state.json marks a complete shard.
    const shardState = opts.shard ? { states: await measures.statesAt(outDir, 'correlation.f64'), ledger: ck.ledger.state(measures.tally) } : undefined;
    const summary = await finishRun(plan, measures, outDir, {
      stats,
      timing,
      tokens: { padded: ck.ledger.padded, real: ck.ledger.real },
      shard: opts.shard,
      report: opts.report,
      assemblePredictions: () => checkpoints.assemblePredictions(),
      correlationPassSeconds: passSeconds,
      saliencePassSeconds,
    });
    if (opts.shard && shardState) await writeShardState(outDir, plan, opts.shard, shardState.states, shardState.ledger, stats);
    ck.complete();
    await endOutput(outDir);
    log(`quantlens: ${stats.examples} examples, ${Math.round(timing.tokensPerSecond)} tokens/s, ${timing.seconds.toFixed(1)} s → ${outDir}`);
    return { outDir, summary };
  } catch (e) {
    await measures.abort().catch(() => undefined);
    removePendingTemporaries();
    ck?.cleanupAfterError();
    abortOutput(outDir, existsSync(path.join(outDir, STATE_DIR, CHECKPOINT_FILE)));
    // A failed run leaves no trace: not even the empty output folder it made.
    if (created && readdirSync(outDir).length === 0) rmdirSync(outDir);
    throw e;
  } finally {
    progress.done();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await measures.release();
    await releasePlan(plan);
  }
}

export interface FinishInput {
  stats: TokenizeStats;
  timing: { seconds: number; tokensPerSecond: number };
  tokens: { padded: number; real: number };
  shard?: { index: number; count: number };
  /** Write report.html (default true; never for a shard). */
  report?: boolean;
  /** Runs once the predictions sink is closed, before anything reads predictions.parquet (resume parts). */
  assemblePredictions?: () => Promise<void>;
  /** Seconds of each extra correlation pass this session ran (pipelines/correlation-passes.ts). */
  correlationPassSeconds?: number[];
  /** Seconds of the salience pass this session ran (salience.schedule after; pipelines/salience-pass.ts), else null. */
  saliencePassSeconds?: number | null;
}

/**
 * The end of every run, shared by `run` and `merge`: predictions closed → estimator tables →
 * calibration from predictions.parquet → summary.json → report. Returns the summary.
 */
export async function finishRun(plan: Plan, measures: RunMeasures, outDir: string, input: FinishInput): Promise<Record<string, any>> {
  // The bootstrap's second thread starts now, while predictions close and are read back.
  const examples = Math.max(0, ...plan.precisions.map((p) => measures.tally.get(p.precision)?.examples ?? 0));
  warmBootstrapWorker(examples * plan.cfg.calibration.bootstrap);
  let calibration: Record<string, Record<string, unknown>>;
  let extra: object;
  try {
    await measures.closePredictions();
    await input.assemblePredictions?.();
    extra = await measures.finish();
    calibration = await writeCalibration(plan, outDir, plan.cfg.measure.includes('calibration'));
  } finally {
    releaseBootstrapWorker();
  }
  const summary = buildSummary(plan, measures, input.stats, input.timing, input.tokens, calibration, extra, input.shard);
  if (plan.memory?.correlation) summary.correlation_passes = { ...passesRecord(plan.memory.correlation), extra_pass_seconds: input.correlationPassSeconds ?? [] };
  const sal = plan.memory?.salience;
  if (sal) summary.salience_schedule = { schedule: sal.schedule, reason: sal.reason, pass_seconds: input.saliencePassSeconds ?? null };
  await writeFileAtomically(path.join(outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  if (input.report !== false && !input.shard) {
    const { writeReport } = await import('../sinks/report/index.ts');
    await writeReport([outDir]);
  }
  return summary;
}

function buildSummary(
  plan: Plan,
  measures: RunMeasures,
  stats: TokenizeStats,
  timing: { seconds: number; tokensPerSecond: number },
  tokens: { padded: number; real: number },
  calibration: Record<string, Record<string, unknown>>,
  extra: object,
  shard?: { index: number; count: number },
): Record<string, any> {
  const { cfg } = plan;
  const precisions: Record<string, unknown> = {};
  for (const p of plan.precisions) {
    const t = measures.tally.get(p.precision)!;
    precisions[p.precision] = {
      examples: t.examples,
      tokens: t.tokens,
      ...(calibration[p.precision] ?? {}),
      inference_seconds: t.inference_seconds,
      loglik_seconds: t.loglik_seconds,
      attribution_seconds: t.attribution_seconds,
      model_path: precisionPath(cfg, p, !!plan.demoLabel),
      model_source: p.source,
      quantization: compactSettings(p.settings),
    };
  }
  return {
    quantlens: plan.metadata['quantlens.version'],
    name: cfg.name,
    model: { ...modelRecord(cfg, plan.folder.dir, plan.modelHash, !!plan.demoLabel), demo: !!plan.demoLabel, label: plan.demoLabel ?? undefined },
    dataset: { path: datasetPath(cfg, plan.dataset.path), examples: stats.examples, skip: cfg.dataset.skip ?? 0, limit: cfg.dataset.limit ?? null, shard: shard ?? cfg.dataset.shard ?? null },
    reference: cfg.agreement.reference ?? cfg.precisions[0],
    precisions,
    layers: plan.sites.map((s) => ({ layer: s.layer, tensor: s.tensor, width: s.width })),
    truncated: stats.truncated,
    padding_efficiency: tokens.real / Math.max(1, tokens.real + tokens.padded),
    wall_seconds: timing.seconds,
    // Σ over precisions of each pass; inference_seconds alone leaves out scoring and attribution.
    pass_seconds: passSeconds(measures),
    tokens_per_second: timing.tokensPerSecond,
    ort: { version: plan.metadata['quantlens.ort_version'], settings: JSON.parse(plan.metadata['quantlens.session_settings']) },
    measures: cfg.measure,
    ...(plan.memory ? { memory: memoryRecord(plan.memory) } : {}),
    ...extra,
  };
}

function passSeconds(measures: RunMeasures): { inference: number; loglik: number; attribution: number } {
  const out = { inference: 0, loglik: 0, attribution: 0 };
  for (const t of measures.tally.values()) {
    out.inference += t.inference_seconds;
    out.loglik += t.loglik_seconds ?? 0;
    out.attribution += t.attribution_seconds ?? 0;
  }
  return out;
}

/** Quantization settings for summary.json: node-name lists become counts (the full lists stay in the Parquet metadata). */
function compactSettings(settings: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(settings)) {
    if (k === 'sessionConfig') continue; // identical for every precision; recorded under ort.settings
    out[k] = Array.isArray(v) && v.length > 8 ? `${v.length} entries` : v;
  }
  return out;
}
