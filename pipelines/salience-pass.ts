/**
 * `salience.schedule: after` (chosen by `auto` when attribution beside the inference sessions
 * would not fit the memory budget, pipelines/budget.ts): the main pass and any correlation passes
 * run without attribution; then the inference sessions are released and one more deterministic
 * pass re-reads the dataset selection batch by batch, as the main pass formed them, and feeds
 * the attribution runners (one session open at a time, pipelines/salience.ts). The estimator
 * sees the same examples in the same order as `during`, so its results are identical.
 *
 * With `salience.limit` the pass stops reading as soon as every selected example the main pass
 * consumed (the ledger's ids) is attributed. Checkpoints: one at the pass boundary, then every
 * `checkpoint_every` batches; a resumed run skips the batches the pass already folded in.
 */
import { QuantlensError } from '../core/errors.ts';
import { releasePlan, type Plan } from './plan.ts';
import type { RunMeasures } from './measures.ts';
import type { RunCheckpoints } from './checkpoint.ts';
import { batchesOf } from './assemble.ts';
import { Progress } from './progress.ts';
import { createAttributionRunners, isSelected, salienceSchedule, selectedExamples } from './salience.ts';

export interface SaliencePassOptions {
  stopped: () => boolean;
  log: (line: string) => void;
  quiet?: boolean;
}

/** How many of the consumed examples `salience.limit` selects. */
function selectedCount(plan: Pick<Plan, 'cfg'>, exampleIds: Int32Array): number {
  let n = 0;
  for (const id of exampleIds) if (isSelected(plan, id)) n++;
  return n;
}

/** After the stream: the salience pass, when the schedule is `after`. Returns its seconds (null: no pass). */
export async function runSaliencePass(plan: Plan, measures: RunMeasures, ck: RunCheckpoints, opts: SaliencePassOptions): Promise<number | null> {
  const salience = measures.salience;
  if (!salience || salienceSchedule(plan) !== 'after') return null;
  const t0 = performance.now();
  const skip = ck.salienceBatches ?? 0;
  // The boundary first: a failure while opening attribution sessions keeps the stream's work.
  if (ck.salienceBatches === null) await ck.salienceProgress(0);
  // The inference sessions' weights are freed before attribution maps its own.
  await releasePlan(plan);
  salience.runners = await createAttributionRunners(plan);
  const target = selectedCount(plan, ck.ledger.exampleIds());
  opts.log(`quantlens: salience pass: ${target} example(s) × ${salience.runners.length} precision×layer, inference sessions released`);
  const progress = new Progress(target, { quiet: opts.quiet, phase: 'salience pass', ttyOnly: true });
  salience.onProgress = (k, n) => progress.note(`attributing ${k}/${n} precision×layer of this batch`);
  const stats = { examples: 0, truncated: 0, tokens: 0 };
  let done = 0;
  let seen = 0;
  try {
    for await (const batch of target > 0 ? batchesOf(plan, stats) : []) {
      if (opts.stopped()) throw new QuantlensError('INTERRUPTED', 'interrupted; no result files were written');
      const selected = selectedExamples(plan, batch).length;
      seen += selected;
      // Batches a resumed pass already folded in are read again, not attributed.
      if (++done > skip) {
        if (selected > 0) {
          for (const [p, sec] of await salience.update({ batch })) measures.tally.get(p)!.attribution_seconds += sec;
          progress.tick(selected, batch.realTokens);
        }
        await ck.salienceProgress(done);
      }
      // Stop reading once every selected example is attributed (salience.limit).
      if (seen >= target) break;
    }
  } finally {
    progress.done();
    salience.onProgress = undefined;
  }
  opts.log(`quantlens: salience pass: ${seen} example(s) attributed; read ${done} batch(es) of the stream's ${ck.batchesDone}`);
  return (performance.now() - t0) / 1000;
}
