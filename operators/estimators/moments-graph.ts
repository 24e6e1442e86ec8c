/**
 * Column moments of a batch computed in ONNX Runtime instead of a JS loop (the JS loop costs a
 * few ns per value and was the largest non-inference share of a run). For X [n, d] and a shift
 * [d] it returns, in float64, Σ(x−shift) and Σ(x−shift)² per column, plus the exact float32
 * column min and max and the count of values strictly inside (lo, hi). ColumnMoments merges
 * these exactly as it merges its own JS pass (mergeShiftedSums).
 */
import ort from 'onnxruntime-node';
import { GraphBuilder, ints, tensor } from '../../sources/onnx/builder.ts';
import { createSession, defaultSessionSettings, type SessionSettings } from '../../sources/onnx/session.ts';
import type { ColumnMoments } from './moments.ts';

export function buildMomentsModel(width: number): Uint8Array {
  const g = new GraphBuilder(`column_moments_${width}`);
  g.input('X', 'float', ['n', width]);
  g.input('shift', 'double', [width]);
  g.input('lo', 'float', []);
  g.input('hi', 'float', []);
  g.initializer('axis0', tensor('int64', [1], BigInt64Array.from([0n])));
  g.node('Cast', ['X'], ['X64'], { to: 11 });
  g.node('Sub', ['X64', 'shift'], ['D']);
  g.node('ReduceSum', ['D', 'axis0'], ['s1'], { keepdims: 0 });
  g.node('Mul', ['D', 'D'], ['D2']);
  g.node('ReduceSum', ['D2', 'axis0'], ['s2'], { keepdims: 0 });
  g.node('ReduceMin', ['X'], ['min'], { axes: ints([0]), keepdims: 0 });
  g.node('ReduceMax', ['X'], ['max'], { axes: ints([0]), keepdims: 0 });
  g.node('Greater', ['X', 'lo'], ['above']);
  g.node('Less', ['X', 'hi'], ['below']);
  g.node('And', ['above', 'below'], ['inside']);
  g.node('Cast', ['inside'], ['inside64'], { to: 11 });
  g.node('ReduceSum', ['inside64', 'axis0'], ['nearZero'], { keepdims: 0 });
  g.output('s1', 'double', [width]);
  g.output('s2', 'double', [width]);
  g.output('min', 'float', [width]);
  g.output('max', 'float', [width]);
  g.output('nearZero', 'double', [width]);
  return g.toModel({ opset: 17 });
}

/** One ORT session per width, created on first use. */
export class MomentsRunner {
  private readonly sessions = new Map<number, Promise<ort.InferenceSession>>();

  constructor(private readonly settings: SessionSettings = defaultSessionSettings()) {}

  private session(width: number): Promise<ort.InferenceSession> {
    let s = this.sessions.get(width);
    if (!s) {
      s = createSession(buildMomentsModel(width), this.settings, { where: `column moments graph (width ${width})` });
      this.sessions.set(width, s);
    }
    return s;
  }

  /** The same result as m.update(values, rows), computed in ORT. */
  async update(m: ColumnMoments, values: Float32Array, rows: number): Promise<void> {
    if (rows === 0) return;
    const w = m.width;
    const session = await this.session(w);
    const shift = Float64Array.from(m.shiftFor(values));
    const out = await session.run({
      X: new ort.Tensor('float32', values.subarray(0, rows * w), [rows, w]),
      shift: new ort.Tensor('float64', shift, [w]),
      lo: new ort.Tensor('float32', Float32Array.of(m.bounds.lo), []),
      hi: new ort.Tensor('float32', Float32Array.of(m.bounds.hi), []),
    });
    m.mergeShiftedSums(rows, shift, out.s1.data as Float64Array, out.s2.data as Float64Array, {
      min: out.min.data as Float32Array,
      max: out.max.data as Float32Array,
      nearZero: out.nearZero.data as Float64Array,
    });
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
