/**
 * Check, before any batch, that padding does not change what the model computes: a padded probe
 * batch must give the same last-position logits as its rows run alone. The side chosen from the
 * attention implementation (onnx/attention-layout.ts) is tried first; if it fails and the other
 * side passes, the other side is used (an attention kernel quantlens does not know); if neither
 * passes, the run is refused in one line, since every padded batch would be silently wrong.
 */
import { QuantlensError } from '../core/errors.ts';
import type { TokenizedExample } from '../core/types.ts';
import type { PadSide } from '../onnx/feeds.ts';
import { makeBatch } from '../operators/batch.ts';
import { runBatch, type PrecisionRunner } from '../operators/infer.ts';
import type { TextTokenizer } from '../sources/tokenizer.ts';

const PROBE_TEXT = 'The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire.';
/**
 * Agreement bound relative to the largest |logit|: batch-shape rounding (float32 or fp16 kernels
 * blocked differently) stays far below 1%, a pad read as a token moves logits by their own scale.
 */
const REL_TOL = 1e-2;

async function probeDiff(runner: PrecisionRunner, side: PadSide, rows: Int32Array[], padId: number): Promise<number> {
  const saved = runner.plan;
  runner.plan = { ...saved, padSide: side };
  try {
    const examples: TokenizedExample[] = rows.map((ids, i) => ({ example_id: i, ids, gold: '', truncated: false, fields: {} }));
    const padded = await runBatch(runner, makeBatch(0, examples), padId);
    const V = padded.prediction.vocab;
    let diff = 0;
    let scale = 1;
    for (let b = 0; b < rows.length; b++) {
      const alone = (await runBatch(runner, makeBatch(0, [examples[b]]), padId)).prediction.logits;
      for (let v = 0; v < V; v++) {
        diff = Math.max(diff, Math.abs(padded.prediction.logits[b * V + v] - alone[v]));
        scale = Math.max(scale, Math.abs(alone[v]));
      }
    }
    return diff / scale;
  } finally {
    runner.plan = saved;
  }
}

/** Probe rows of different lengths from the tokenizer (so ids are real), shortest 2 tokens. */
function probeRows(tok: TextTokenizer, maxLen: number): Int32Array[] {
  const ids = tok.encode(PROBE_TEXT);
  const n = Math.max(2, Math.min(ids.length, maxLen, 12));
  return [n, Math.max(2, n >> 1), Math.max(2, n - 3)].map((len) => ids.slice(0, Math.min(len, ids.length)));
}

/**
 * Set every runner's pad side to one that the reference runner (the model as given) confirms.
 * Returns the side and why. Quantized runners are not probed: llm-int8's per-batch outlier
 * columns legitimately depend on which rows share a batch.
 */
export async function confirmPaddingSide(
  runners: PrecisionRunner[],
  reference: PrecisionRunner | undefined,
  tok: TextTokenizer,
  chosen: { side: PadSide; why: string },
  opts: { maxContext: number; where?: string },
): Promise<{ side: PadSide; why: string }> {
  if (!reference || runners.length === 0) return chosen;
  const rows = probeRows(tok, opts.maxContext);
  const first = await probeDiff(reference, chosen.side, rows, tok.padId);
  let result = chosen;
  if (!(first <= REL_TOL)) {
    const other: PadSide = chosen.side === 'left' ? 'right' : 'left';
    const second = await probeDiff(reference, other, rows, tok.padId);
    if (!(second <= REL_TOL)) {
      throw new QuantlensError(
        'MODEL',
        `a padded batch differs from its rows run alone (relative max |Δ logit| ${first.toExponential(1)} with ${chosen.side} padding, ${second.toExponential(1)} with ${other}): the model does not honour its attention mask`,
        opts.where,
      );
    }
    result = { side: other, why: `${other} padding: a padded probe batch matched its rows alone (${chosen.side} padding did not: ${first.toExponential(1)})` };
  }
  for (const r of runners) r.plan = { ...r.plan, padSide: result.side };
  return result;
}
