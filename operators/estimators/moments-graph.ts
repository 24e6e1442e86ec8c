/**
 * Column moments of activations already in JS memory, computed in ONNX Runtime instead of a JS loop
 * (the JS loop costs a few ns per value and was the largest non-inference share of a run). It runs
 * the same graph fragment the pipeline appends to the model itself (onnx/moment-stats.ts) on a
 * standalone model, so both paths compute and decode the statistics identically; ColumnMoments
 * merges them as it merges its own JS pass (mergeShiftedSums).
 */
import ort from 'onnxruntime-node';
import { createSession, defaultSessionSettings, type SessionSettings } from '../../onnx/session.ts';
import { columnMomentsModel, COLUMN_MOMENTS_MASK, COLUMN_MOMENTS_X, InGraphMoments } from '../../onnx/moment-stats.ts';
import type { ColumnMoments } from './moments.ts';

/** One ORT session per width, created on first use. */
export class MomentsRunner {
  private readonly sessions = new Map<number, Promise<ort.InferenceSession>>();

  constructor(private readonly settings: SessionSettings = defaultSessionSettings()) {}

  private session(width: number): Promise<ort.InferenceSession> {
    let s = this.sessions.get(width);
    if (!s) {
      s = createSession(columnMomentsModel(width), this.settings, { where: `column moments graph (width ${width})` });
      this.sessions.set(width, s);
    }
    return s;
  }

  /** The same result as m.update(values, rows), computed in ORT. */
  async update(m: ColumnMoments, values: Float32Array, rows: number): Promise<void> {
    if (rows === 0) return;
    const w = m.width;
    const session = await this.session(w);
    const moments = new InGraphMoments([{ layer: 0, tensor: COLUMN_MOMENTS_X, width: w }], m.bounds);
    const out = await session.run(
      {
        [COLUMN_MOMENTS_X]: new ort.Tensor('float32', values.subarray(0, rows * w), [1, rows, w]),
        [COLUMN_MOMENTS_MASK]: new ort.Tensor('int64', new BigInt64Array(rows).fill(1n), [1, rows]),
        ...moments.feeds(),
      },
      moments.fetches(),
    );
    const [b] = moments.read(out, rows, '');
    m.mergeShiftedSums(rows, b.shift, b.s1, b.s2, b);
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
