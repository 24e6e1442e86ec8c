/**
 * Column moments of a batch computed in ONNX Runtime instead of a JS loop (the JS loop costs a
 * few ns per value and was the largest non-inference share of a run). For X [n, d] and a shift
 * [d] it returns, in float64, Σ(x−shift) and Σ(x−shift)² per column, plus the exact float32
 * column min and max and the count of values strictly inside (lo, hi). ColumnMoments merges
 * these exactly as it merges its own JS pass (mergeShiftedSums).
 */
import ort from 'onnxruntime-node';
import { GraphBuilder, ints, tensor } from '../../onnx/builder.ts';
import { createSession, defaultSessionSettings, type SessionSettings } from '../../onnx/session.ts';
import type { ColumnMoments } from './moments.ts';

export function buildMomentsModel(width: number): Uint8Array {
  const g = new GraphBuilder(`column_moments_${width}`);
  g.input('X', 'float', ['n', width]);
  g.input('shift', 'double', [width]);
  // Rows of ones: column sums as GEMVs (one pass each, no strided reductions).
  g.input('ones64', 'double', [1, 'n']);
  g.input('ones32', 'float', [1, 'n']);
  g.input('lo', 'float', []);
  g.input('hi', 'float', []);
  g.initializer('flat', tensor('int64', [1], BigInt64Array.from([-1n])));
  g.node('Cast', ['X'], ['X64'], { to: 11 });
  g.node('Sub', ['X64', 'shift'], ['D']);
  g.node('MatMul', ['ones64', 'D'], ['s1_row']);
  g.node('Reshape', ['s1_row', 'flat'], ['s1']);
  g.node('Mul', ['D', 'D'], ['D2']);
  g.node('MatMul', ['ones64', 'D2'], ['s2_row']);
  g.node('Reshape', ['s2_row', 'flat'], ['s2']);
  g.node('ReduceMin', ['X'], ['min'], { axes: ints([0]), keepdims: 0 });
  g.node('ReduceMax', ['X'], ['max'], { axes: ints([0]), keepdims: 0 });
  g.node('Greater', ['X', 'lo'], ['above']);
  g.node('Less', ['X', 'hi'], ['below']);
  g.node('And', ['above', 'below'], ['inside']);
  g.node('Cast', ['inside'], ['inside32'], { to: 1 });
  // 0/1 counts in a float32 GEMV are exact below 2^24 rows per batch.
  g.node('MatMul', ['ones32', 'inside32'], ['nz_row']);
  g.node('Cast', ['nz_row'], ['nz_row64'], { to: 11 });
  g.node('Reshape', ['nz_row64', 'flat'], ['nearZero']);
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
      ones64: new ort.Tensor('float64', new Float64Array(rows).fill(1), [1, rows]),
      ones32: new ort.Tensor('float32', new Float32Array(rows).fill(1), [1, rows]),
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
