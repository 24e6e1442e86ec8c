/**
 * Extra forward passes that read the logits at every position (teacher forcing): left-padded
 * rows as the run feeds them, the full [rows, T, vocab] logits back in float32.
 */
import { buildFeeds } from '../onnx/feeds.ts';
import { halfToFloat } from '../onnx/dtypes.ts';
import { extraFeeds, type PrecisionRunner } from './infer.ts';

export interface ForcedLogits {
  /** Row-major [rows, T, V]; row r's token j (of n) sits at padded position T − n + j. */
  logits: Float32Array;
  T: number;
  V: number;
}

export async function forwardLogits(runner: PrecisionRunner, seqs: Int32Array[], padId: number): Promise<ForcedLogits> {
  const lengths = Int32Array.from(seqs, (s) => s.length);
  const T = Math.max(...lengths);
  const feeds = { ...buildFeeds(runner.plan, { seqLen: T, lengths, ids: seqs }, padId), ...extraFeeds(runner) };
  const out = await runner.session.run(feeds, ['logits']);
  const t = out.logits;
  const logits = t.type === 'float16' ? halfToFloat(t.data as Uint16Array) : (t.data as Float32Array);
  return { logits, T, V: t.dims[2] };
}

export { logSoftmaxAt } from './logits.ts';
