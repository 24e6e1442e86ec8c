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

/** log-softmax of logits[off … off+V) in float64, the max subtracted. */
export function logSoftmaxAt(logits: Float32Array, off: number, V: number): Float64Array {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[off + v]);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(logits[off + v] - m);
  const lz = m + Math.log(z);
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) out[v] = logits[off + v] - lz;
  return out;
}
