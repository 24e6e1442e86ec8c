/**
 * Scoring predictions from the logits at the predicted position.
 *
 *  - first-token (the paper's): prediction = argmax over the full vocabulary, confidence = its
 *    softmax probability; correct when the trimmed, lowercased gold string is contained in the
 *    lowercased decoded token. An empty (after trim) prediction or gold is wrong.
 *  - choices: softmax renormalised over the given label token ids only; prediction = the most
 *    probable choice, confidence = its renormalised probability; correct when the choice string
 *    equals the gold string (both trimmed and lowercased). The pipeline's `choices` mode finds
 *    those ids per prompt (the labels' distinguishing tokens, teacher-forced where the labels share
 *    leading tokens) in operators/choices.ts; this is its fixed-id core.
 *  - loglik: extra forward passes, in operators/loglik.ts (scoreLoglik).
 * Softmax is computed in float64 with the max subtracted.
 */
import type { PredictionBatch } from '../core/types.ts';
import { QuantlensError } from '../core/errors.ts';
import { argmax, logSumExp } from './logits.ts';

export type Scoring =
  | { mode: 'first-token'; decode: (id: number) => string }
  /** Label string → token id, e.g. {' True': 5, ' False': 9}. Ties go to the first listed. */
  | { mode: 'choices'; choices: Record<string, number> }
  | { mode: 'loglik' };

export interface ScoreRow {
  example_id: number;
  precision: string;
  gold: string;
  predicted_token_id: number;
  predicted_token: string;
  confidence: number;
  correct: boolean;
}

/** Labels and gold strings compare trimmed and lowercased. */
export const norm = (s: string) => s.trim().toLowerCase();

/** The paper's first-token rule: trimmed, lowercased gold contained in the lowercased token. */
export function firstTokenCorrect(predicted: string, gold: string): boolean {
  const g = norm(gold);
  if (predicted.trim() === '' || g === '') return false;
  return predicted.toLowerCase().includes(g);
}

export function scorePredictions(batch: PredictionBatch, scoring: Scoring): ScoreRow[] {
  const { vocab: V, logits, exampleIds } = batch;
  const n = exampleIds.length;
  if (logits.length !== n * V) throw new QuantlensError('STATE', `scoring: batch ${batch.batchIndex} has ${logits.length} logits for ${n} examples × vocab ${V}`);
  if (batch.gold.length !== n) throw new QuantlensError('STATE', `scoring: batch ${batch.batchIndex} has ${batch.gold.length} gold strings for ${n} examples`);
  if (scoring.mode === 'loglik') throw new QuantlensError('STATE', 'scoring: loglik needs extra forward passes; use operators/loglik.ts (scoreLoglik)');

  const rows: ScoreRow[] = [];
  if (scoring.mode === 'first-token') {
    for (let e = 0; e < n; e++) {
      const off = e * V;
      const best = argmax(logits, off, V);
      const confidence = Math.exp(logits[off + best] - logSumExp(logits, off, V));
      const token = scoring.decode(best);
      rows.push({ example_id: exampleIds[e], precision: batch.precision, gold: batch.gold[e], predicted_token_id: best, predicted_token: token, confidence, correct: firstTokenCorrect(token, batch.gold[e]) });
    }
    return rows;
  }

  const labels = Object.keys(scoring.choices);
  const ids = labels.map((l) => scoring.choices[l]);
  if (labels.length === 0) throw new QuantlensError('CONFIG', 'scoring: choices is empty');
  ids.forEach((id, k) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new QuantlensError('CONFIG', `scoring: choice ${JSON.stringify(labels[k])} has token id ${id}, outside the vocabulary of ${V}`);
    const first = ids.indexOf(id);
    if (first !== k) throw new QuantlensError('CONFIG', `scoring: choices ${JSON.stringify(labels[first])} and ${JSON.stringify(labels[k])} map to the same token id ${id}`);
  });
  for (let e = 0; e < n; e++) {
    const off = e * V;
    const chosen = ids.map((id) => logits[off + id]);
    const best = argmax(chosen);
    rows.push({
      example_id: exampleIds[e], precision: batch.precision, gold: batch.gold[e], predicted_token_id: ids[best], predicted_token: labels[best],
      confidence: Math.exp(chosen[best] - logSumExp(chosen)), correct: norm(labels[best]) === norm(batch.gold[e]),
    });
  }
  return rows;
}
