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

export function batchesOf(plan: Plan, stats: TokenizeStats): AsyncIterable<Batch> {
  const { cfg } = plan;
  const records = openDataset(plan.dataset);
  const prompted = promptExamples(records, plan.template, cfg.dataset.gold);
  const tokenized = tokenizeExamples(prompted, plan.tokenizer, { maxContext: plan.maxContext, keep: cfg.dataset.truncation, stats });
  return batchByTokens(tokenized, { maxTokens: cfg.batch.max_tokens, maxExamples: cfg.batch.max_examples, window: cfg.batch.window });
}

export function assemble(
  plan: Plan,
  batches: AsyncIterable<Batch>,
  consume: (r: BatchResult) => Promise<void>,
  /** `stop$` (Ctrl-C) ends the stream at once; the batch in flight is dropped, not half-counted. */
  opts: { inFlight?: number; stop$?: Observable<unknown> } = {},
): Observable<BatchResult> {
  const { demand$, ack } = createDemand(opts.inFlight ?? 2);
  return pull(batches, demand$).pipe(
    infer(plan.runners, plan.tokenizer.padId),
    concatMap(async (r) => {
      await consume(r);
      return r;
    }),
    tap(() => ack()),
    takeUntil(opts.stop$ ?? NEVER),
  );
}
