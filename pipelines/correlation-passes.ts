/**
 * Multi-pass correlation. When the co-moments of every (layer, precision) key do not fit the
 * memory budget together, pipelines/correlation-budget.ts splits them into groups; the main pass
 * (predictions and every other measure) accumulates the first group, and each further group is
 * one more deterministic pass over the dataset that:
 *   - runs only the precisions its keys need, on the run's own sessions (so the activations are
 *     bit for bit those of the main pass: same graph, same kernels, same batches);
 *   - fetches only its layers' activations (no logits, no predictions: the main pass's stand);
 *   - feeds them to the correlation estimator alone.
 * Between passes the finished group becomes results and its memory is released (a shard also
 * keeps its co-moments as a binary file, for merge), and a checkpoint records the next pass;
 * inside an extra pass checkpoints follow `checkpoint_every` as in the main pass, so a resumed run
 * skips the batches that pass already folded in and gives the same numbers.
 */
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import type { ActivationChunk, Batch } from '../core/types.ts';
import type { ActivationSite } from '../onnx/capture.ts';
import { activationChunksOf, batchFeeds, type PrecisionRunner } from '../operators/infer.ts';
import type { CorrelationEstimator } from '../operators/estimators/correlation.ts';
import type { CorrelationKey } from './correlation-budget.ts';
import type { Plan } from './plan.ts';
import type { RunMeasures } from './measures.ts';
import type { RunCheckpoints } from './checkpoint.ts';
import { batchesOf } from './assemble.ts';
import { Progress } from './progress.ts';

export interface PassOptions {
  stopped: () => boolean;
  log: (line: string) => void;
  /** A shard keeps each finished pass's co-moments (in its state folder until the shard is complete). */
  spill: boolean;
  /** Examples per pass (the main pass's count), for the progress line; `quiet` as the run's. */
  total: number;
  quiet?: boolean;
}

const passesOf = (plan: Plan): CorrelationKey[][] => plan.memory?.correlation?.passes ?? [];

/** Before the main pass: its correlation accumulates only the first group when there are several. */
export function startMainPass(plan: Plan, measures: RunMeasures): void {
  const passes = passesOf(plan);
  if (measures.correlation && passes.length > 1) measures.correlation.setActiveKeys(passes[0]);
}

/** After the main pass: the remaining passes (from the checkpoint's, when resumed). Returns each pass's seconds. */
export async function runCorrelationPasses(plan: Plan, measures: RunMeasures, ck: RunCheckpoints, opts: PassOptions): Promise<number[]> {
  const passes = passesOf(plan);
  const corr = measures.correlation;
  if (!corr || passes.length <= 1) return [];
  const spillTo = (g: number) => (opts.spill ? path.join(ck.dir, `correlation-pass${g + 1}.f64`) : undefined);
  const seconds: number[] = [];
  let g = ck.correlationPass;
  if (g === 0) {
    await corr.retire(spillTo(0));
    await ck.passCompleted(1);
    g = 1;
  }
  for (let resumed = ck.passBatches; g < passes.length; g++, resumed = 0) {
    const t0 = performance.now();
    const keys = passes[g];
    opts.log(`quantlens: correlation pass ${g + 1}/${passes.length}: ${keys.map((k) => `${k.precision} layer ${k.layer}`).join(', ')}`);
    corr.setActiveKeys(keys);
    const progress = new Progress(opts.total, { quiet: opts.quiet, phase: `correlation pass ${g + 1}/${passes.length}`, ttyOnly: true });
    try {
      await runPass(plan, keys, corr, opts, progress, { skip: resumed, checkpoint: (done) => ck.passProgress(g, done) });
    } finally {
      progress.done();
    }
    await corr.retire(spillTo(g));
    await ck.passCompleted(g + 1);
    seconds.push((performance.now() - t0) / 1000);
  }
  return seconds;
}

/** The sites of each precision a pass's keys name, in the order the main pass feeds them. */
function sitesByPrecision(plan: Plan, keys: CorrelationKey[]): Map<string, ActivationSite[]> {
  const out = new Map<string, ActivationSite[]>();
  for (const p of plan.cfg.precisions)
    for (const s of plan.sites) if (keys.some((k) => k.precision === p && k.layer === s.layer && k.tensor === s.tensor)) out.set(p, [...(out.get(p) ?? []), s]);
  return out;
}

/** One pass over the dataset, batch by batch as the main pass saw them; `skip` batches were folded in before a resume. */
async function runPass(
  plan: Plan,
  keys: CorrelationKey[],
  corr: CorrelationEstimator,
  opts: PassOptions,
  progress: Progress,
  at: { skip: number; checkpoint: (done: number) => Promise<void> },
): Promise<void> {
  const sites = sitesByPrecision(plan, keys);
  const stats = { examples: 0, truncated: 0, tokens: 0 };
  let done = 0;
  for await (const batch of batchesOf(plan, stats)) {
    if (opts.stopped()) throw new QuantlensError('INTERRUPTED', 'interrupted; no result files were written');
    progress.tick(batch.examples.length, batch.realTokens);
    if (done < at.skip) {
      done++;
      continue;
    }
    for (const [precision, s] of sites) {
      const runner = plan.runners.find((r) => r.precision === precision)!;
      for (const c of await captureOnly(runner, s, batch, plan.tokenizer.padId)) await corr.update(c);
    }
    await corr.drain();
    await at.checkpoint(++done);
  }
}

/** The activations of `sites` for one batch: the same feeds as the main pass, only these outputs fetched. */
async function captureOnly(runner: PrecisionRunner, sites: ActivationSite[], batch: Batch, padId: number): Promise<ActivationChunk[]> {
  const out = await runner.session.run(batchFeeds(runner, batch, padId), sites.map((s) => s.capture ?? s.tensor));
  return activationChunksOf(runner, sites, out, batch);
}
