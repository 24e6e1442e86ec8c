/**
 * `scoring.mode: choices`: the labels compete at their distinguishing token (the first token that
 * tells them apart after the prompt, sources/tokenizer.ts splitLabels). Where the labels share
 * leading tokens (a SentencePiece word boundary, "▁T r u" of " True"/" Trust"), those are fed
 * after the prompt (teacher-forced) in one extra forward pass per such example, and the
 * distinguishing token's probability is read there; otherwise the logits at the predicted position
 * suffice. The prediction is the most probable distinguishing token, its confidence the softmax
 * renormalised over the labels' tokens. Each choice's log-likelihood (full-vocabulary
 * log-softmax, Σ over the shared tokens and its distinguishing token) and that token count are
 * recorded, as the harness would report them.
 */
import type { PredictionBatch, TokenizedExample } from '../core/types.ts';
import { QuantlensError } from '../core/errors.ts';
import { labelTokenId, splitLabels, truncate, type LabelSplit, type TextTokenizer } from '../sources/tokenizer.ts';
import { norm, type ScoreRow } from './score.ts';
import { type PrecisionRunner } from './infer.ts';
import { forwardLogits } from './forced-logits.ts';
import { argmax, logSoftmaxAt, logSumExp } from './logits.ts';

export interface ChoiceScoreRow extends ScoreRow {
  choice_loglik: number[];
  choice_tokens: number[];
}


/** The labels' split after one prompt, or the one-line error pointing to loglik. */
export function choiceSplit(tok: TextTokenizer, labels: string[], text: string, exampleId: number): LabelSplit {
  const split = splitLabels(tok, labels, text);
  if (typeof split === 'string') throw new QuantlensError('CONFIG', `scoring.choices: example ${exampleId}: ${split}; use scoring.mode: loglik`, 'scoring.choices');
  return split;
}

/**
 * Ids to run so that the last position predicts the distinguishing token: the example's own ids
 * (already truncated) when the labels keep the whole prompt, else the prompt as the labels
 * re-tokenize it; then the shared tokens. Null when the example's ids alone suffice.
 */
export function teacherForcedIds(example: { ids: Int32Array }, split: LabelSplit, maxContext: number, bosId: number | null): Int32Array | null {
  const wholePrompt = split.kept === split.contextIds.length;
  if (wholePrompt && split.prefix.length === 0) return null;
  const ctx = wholePrompt ? example.ids : split.contextIds.subarray(0, split.kept);
  return truncate(Int32Array.from([...ctx, ...split.prefix]), maxContext, 'right', bosId).ids;
}

export async function scoreChoices(
  runner: PrecisionRunner,
  prediction: PredictionBatch,
  examples: TokenizedExample[],
  texts: string[],
  labels: string[],
  tok: TextTokenizer,
  opts: { maxContext: number; maxRows?: number },
): Promise<ChoiceScoreRow[]> {
  const V = prediction.vocab;
  const splits = examples.map((e, i) => choiceSplit(tok, labels, texts[i], e.example_id));
  for (const s of splits)
    for (const id of s.tokens) if (id < 0 || id >= V) throw new QuantlensError('CONFIG', `scoring.choices: token id ${id} is outside the vocabulary of ${V}`, 'scoring.choices');
  const forced = examples.map((e, i) => teacherForcedIds(e, splits[i], opts.maxContext, tok.bosId));
  const need = forced.flatMap((ids, i) => (ids ? [i] : []));
  // Per example, per step s (shared token s, then the distinguishing token): log-softmax rows.
  const steps: Float64Array[][] = examples.map((_, i) => [logSoftmaxAt(prediction.logits, i * V, V)]);
  const maxRows = opts.maxRows ?? 32;
  for (let start = 0; start < need.length; start += maxRows) {
    const part = need.slice(start, start + maxRows);
    const seqs = part.map((i) => forced[i]!);
    const out = await forwardLogits(runner, seqs, tok.padId);
    part.forEach((i, r) => {
      const P = splits[i].prefix.length;
      const n = seqs[r].length;
      // Positions n−1−P … n−1 predict prefix[0], …, prefix[P−1], then the distinguishing token.
      steps[i] = Array.from({ length: P + 1 }, (_, s) => logSoftmaxAt(out.logits, (r * out.T + out.start(n) + (n - 1 - P + s)) * out.V, out.V));
    });
  }
  return examples.map((ex, i) => choiceRow(ex, runner.precision, labels, splits[i], steps[i]));
}

function choiceRow(ex: TokenizedExample, precision: string, labels: string[], split: LabelSplit, steps: Float64Array[]): ChoiceScoreRow {
  const P = split.prefix.length;
  let prefixLL = 0;
  // Without a forced pass there is one step only; then the prefix is empty by construction.
  for (let s = 0; s < P; s++) prefixLL += steps[s][split.prefix[s]];
  const last = steps[steps.length - 1];
  const ll = split.tokens.map((id) => last[id]);
  const best = argmax(ll);
  const lz = logSumExp(ll);
  return {
    example_id: ex.example_id,
    precision,
    gold: ex.gold,
    predicted_token_id: split.tokens[best],
    predicted_token: labels[best],
    confidence: Math.exp(ll[best] - lz),
    correct: norm(labels[best]) === norm(ex.gold),
    choice_loglik: ll.map((v) => v + prefixLL),
    choice_tokens: ll.map(() => P + 1),
  };
}

/**
 * `salience.target: gold`, by the same definition: when the gold answer is one of the choices,
 * the target is its distinguishing token after the prompt (the shared tokens fed first, so
 * attribution runs on those ids); otherwise the first token of the gold string alone.
 */
export function goldTarget(
  tok: TextTokenizer,
  example: TokenizedExample,
  text: string,
  choices: string[],
  maxContext: number,
): { ids: Int32Array; target: number | undefined } {
  const k = choices.findIndex((c) => norm(c) === norm(example.gold));
  if (k < 0) return { ids: example.ids, target: labelTokenId(tok, example.gold) };
  const split = choiceSplit(tok, choices, text, example.example_id);
  return { ids: teacherForcedIds(example, split, maxContext, tok.bosId) ?? example.ids, target: split.tokens[k] };
}
