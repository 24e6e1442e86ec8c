/**
 * The whole graph of a run, read top to bottom:
 *
 *   dataset (pull) → prompt → tokenize → batch     async iterators: nothing is read until asked
 *        │ pull(…, demand$)                         at most `inFlight` batches in flight
 *        ▼
 *   infer (one session per precision)               RxJS from here on
 *   → measures.update (estimators, predictions)     awaits its async work before acking
 *   → ack() → next batch is pulled
 */
import { concatMap, takeUntil, tap, NEVER, type Observable } from 'rxjs';
import type { Plan } from './plan.ts';
import type { Batch } from '../core/types.ts';
import { openDataset } from '../sources/dataset/open.ts';
import { promptExamples, tokenizeExamples, type TokenizeStats } from '../operators/encode.ts';
import { batchByTokens } from '../operators/batch.ts';
import { createDemand, pull } from '../operators/pull.ts';
import { infer, type BatchResult } from '../operators/infer.ts';
import type { StageClock } from '../operators/stage-clock.ts';

/** With a clock (benchmarks), each iterator stage is timed (operators/stage-clock.ts). */
export function batchesOf(plan: Plan, stats: TokenizeStats, clock?: StageClock): AsyncIterable<Batch> {
  const { cfg } = plan;
  const timed = <T>(stage: string, it: AsyncIterable<T>) => (clock ? clock.iterable(stage, it) : it);
  const records = timed('read', openDataset(plan.dataset));
  const prompted = timed('prompt', promptExamples(records, plan.template, cfg.dataset.gold));
  const tokenized = timed('tokenize', tokenizeExamples(prompted, plan.tokenizer, { maxContext: plan.maxContext, keep: cfg.dataset.truncation, stats }));
  return timed('batch', batchByTokens(tokenized, { maxTokens: cfg.batch.max_tokens, maxExamples: cfg.batch.max_examples, window: cfg.batch.window }));
}

export function assemble(
  plan: Plan,
  batches: AsyncIterable<Batch>,
  consume: (r: BatchResult) => Promise<void>,
  /** `stop$` (Ctrl-C) ends the stream at once; the batch in flight is dropped, not half-counted. */
  opts: { inFlight?: number; stop$?: Observable<unknown>; clock?: StageClock } = {},
): Observable<BatchResult> {
  const { demand$, ack } = createDemand(opts.inFlight ?? 2);
  const mark = <T>(point: string) => (opts.clock ? opts.clock.mark<T>(point) : tap<T>());
  return pull(batches, demand$).pipe(
    mark('pulled'),
    infer(plan.runners, plan.tokenizer.padId),
    mark('inferred'),
    concatMap(async (r) => {
      await consume(r);
      return r;
    }),
    mark('consumed'),
    tap(() => ack()),
    takeUntil(opts.stop$ ?? NEVER),
  );
}
