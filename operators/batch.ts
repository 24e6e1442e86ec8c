/**
 * Token-budget batching with length bucketing. Examples are pulled into a bounded window,
 * sorted by length and cut into left-padded batches with B × maxLen ≤ max_tokens, so padding
 * stays low while memory stays bounded by the window. Batch order differs from file order;
 * every downstream result is keyed by example_id.
 */
import type { Batch, TokenizedExample } from '../core/types.ts';

export interface BatchOptions {
  maxTokens: number;
  maxExamples: number;
  window: number;
}

export function makeBatch(index: number, examples: TokenizedExample[]): Batch {
  const lengths = Int32Array.from(examples, (e) => e.ids.length);
  const seqLen = Math.max(...lengths);
  const realTokens = lengths.reduce((a, b) => a + b, 0);
  return { index, examples, seqLen, lengths, realTokens, paddedTokens: examples.length * seqLen - realTokens };
}

/** Cut a window of examples (any order) into batches within the budget. */
export function cutWindow(window: TokenizedExample[], opts: BatchOptions, firstIndex: number): Batch[] {
  const sorted = [...window].sort((a, b) => a.ids.length - b.ids.length || a.example_id - b.example_id);
  const out: Batch[] = [];
  let cur: TokenizedExample[] = [];
  for (const ex of sorted) {
    // Sorted ascending, so the newcomer sets the batch's padded length.
    const fits = cur.length < opts.maxExamples && (cur.length + 1) * ex.ids.length <= opts.maxTokens;
    if (cur.length && !fits) {
      out.push(makeBatch(firstIndex + out.length, cur));
      cur = [];
    }
    cur.push(ex); // an example longer than the budget still runs, alone
  }
  if (cur.length) out.push(makeBatch(firstIndex + out.length, cur));
  return out;
}

export async function* batchByTokens(examples: AsyncIterable<TokenizedExample>, opts: BatchOptions): AsyncGenerator<Batch> {
  let window: TokenizedExample[] = [];
  let index = 0;
  for await (const ex of examples) {
    window.push(ex);
    if (window.length < opts.window) continue;
    const batches = cutWindow(window, opts, index);
    index += batches.length;
    window = [];
    yield* batches;
  }
  if (window.length) yield* cutWindow(window, opts, index);
}
