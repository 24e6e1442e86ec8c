/**
 * `scoring.mode: loglik`, as lm-evaluation-harness scores multiple choice: each choice is a
 * continuation of the prompt; its score is Σ log p(continuation token | everything before it).
 * The prediction is the best-scoring choice, its confidence the softmax of the scores over the
 * choices. Continuation tokens are found as in the harness: encode(prompt + choice) minus the
 * common prefix with encode(prompt), so merges across the boundary are tokenized as in context.
 * It costs one extra forward pass per (example, choice) and needs the full logits of those runs;
 * the prompt's own inference pass is then skipped unless a measure reads its activations or logits
 * (pipelines/plan.ts), and these passes are timed as loglik_seconds in summary.json.
 * Every choice's score and continuation token count are returned with the row.
 */
import type { TokenizedExample } from '../core/types.ts';
import type { TextTokenizer } from '../sources/tokenizer.ts';
import type { PrecisionRunner } from './infer.ts';
import type { ChoiceScoreRow } from './choices.ts';
import { norm } from './score.ts';
import { forwardLogits } from './forced-logits.ts';


interface Candidate {
  example: number;
  choice: number;
  ids: Int32Array;
  continuation: number;
}

/** Candidate sequences (prompt + choice) and the length of each choice's continuation. */
export function loglikCandidates(texts: string[], choices: string[], tok: TextTokenizer, maxContext: number): Candidate[] {
  const out: Candidate[] = [];
  texts.forEach((text, e) => {
    const ctx = tok.encode(text);
    choices.forEach((c, k) => {
      let whole = tok.encode(text + c);
      let common = 0;
      while (common < ctx.length && common < whole.length && ctx[common] === whole[common]) common++;
      const continuation = Math.max(1, whole.length - common);
      if (whole.length > maxContext) whole = whole.slice(whole.length - maxContext); // keep the end: the continuation
      out.push({ example: e, choice: k, ids: whole, continuation: Math.min(continuation, whole.length - 1) });
    });
  });
  return out;
}

export async function scoreLoglik(
  runner: PrecisionRunner,
  examples: TokenizedExample[],
  texts: string[],
  choices: string[],
  tok: TextTokenizer,
  opts: { maxContext: number; maxRows?: number },
): Promise<ChoiceScoreRow[]> {
  const cands = loglikCandidates(texts, choices, tok, opts.maxContext);
  const scores = examples.map(() => new Float64Array(choices.length));
  const firstToken = examples.map(() => new Int32Array(choices.length));
  const counts = examples.map(() => new Int32Array(choices.length));
  const maxRows = opts.maxRows ?? 32;
  for (let start = 0; start < cands.length; start += maxRows) {
    const part = cands.slice(start, start + maxRows);
    const { logits, T, V, start: rowStart } = await forwardLogits(runner, part.map((c) => c.ids), tok.padId);
    part.forEach((c, r) => {
      let sum = 0;
      // Continuation token j sits at padded position start(n) + j; its logits come from the position before.
      for (let j = c.ids.length - c.continuation; j < c.ids.length; j++) {
        const off = (r * T + (rowStart(c.ids.length) + j - 1)) * V;
        let m = -Infinity;
        for (let v = 0; v < V; v++) m = Math.max(m, logits[off + v]);
        let z = 0;
        for (let v = 0; v < V; v++) z += Math.exp(logits[off + v] - m);
        sum += logits[off + c.ids[j]] - m - Math.log(z);
      }
      scores[c.example][c.choice] = sum;
      firstToken[c.example][c.choice] = c.ids[c.ids.length - c.continuation];
      counts[c.example][c.choice] = c.continuation;
    });
  }
  return examples.map((ex, e) => {
    const s = scores[e];
    let best = 0;
    for (let k = 1; k < s.length; k++) if (s[k] > s[best]) best = k;
    let z = 0;
    for (const v of s) z += Math.exp(v - s[best]);
    return {
      example_id: ex.example_id,
      precision: runner.precision,
      gold: ex.gold,
      predicted_token_id: firstToken[e][best],
      predicted_token: choices[best],
      confidence: 1 / z,
      correct: norm(choices[best]) === norm(ex.gold),
      choice_loglik: Array.from(s),
      choice_tokens: Array.from(counts[e]),
    };
  });
}
