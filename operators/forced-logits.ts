/**
 * Extra forward passes that read the logits at every position (teacher forcing): rows padded on
 * the side the run pads (left, or right for models whose attention needs real tokens first), the
 * full [rows, T, vocab] logits back in float32.
 */
import { rowStart } from '../onnx/feeds.ts';
import { halfToFloat } from '../onnx/dtypes.ts';
import { runnerFeeds, type PrecisionRunner } from './infer.ts';

export interface ForcedLogits {
  /** Row-major [rows, T, V]; a row of n tokens holds token j at padded position start(n) + j. */
  logits: Float32Array;
  T: number;
  V: number;
  /** Padded position of the first real token of a row of `n` tokens. */
  start(n: number): number;
}

export async function forwardLogits(runner: PrecisionRunner, seqs: Int32Array[], padId: number): Promise<ForcedLogits> {
  const lengths = Int32Array.from(seqs, (s) => s.length);
  const T = Math.max(...lengths);
  const feeds = runnerFeeds(runner, { seqLen: T, lengths, ids: seqs }, padId);
  const out = await runner.session.run(feeds, ['logits']);
  const t = out.logits;
  const logits = t.type === 'float16' ? halfToFloat(t.data as Uint16Array) : (t.data as Float32Array);
  return { logits, T, V: t.dims[2], start: (n) => rowStart(runner.plan, T, n) };
}

export { logSoftmaxAt } from './logits.ts';
