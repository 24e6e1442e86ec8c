/**
 * The tiny ONNX graph behind the correlation estimator: for a batch X [n, d] it returns the column
 * means [1, d] and the centred Gram matrix G = Xcᵀ·Xc [d, d] with Xc = X − mean. The O(n·d²)
 * product runs in ONNX Runtime's GEMM rather than in JS loops. With `compute: 'float64'` the input
 * is cast to double first so a constant column centres to exactly zero and the Gram keeps
 * float64 precision (slower GEMM); 'float32' is the fast path.
 */
import ort from 'onnxruntime-node';
import { GraphBuilder, ints } from '../../onnx/builder.ts';
import { createSession, defaultSessionSettings, type SessionSettings } from '../../onnx/session.ts';

export type GramCompute = 'float32' | 'float64';

export function buildGramModel(width: number, compute: GramCompute): Uint8Array {
  const g = new GraphBuilder(`centred_gram_${width}_${compute}`);
  const t = compute === 'float64' ? 'double' : 'float';
  g.input('X', 'float', ['n', width]);
  let x = 'X';
  if (compute === 'float64') [x] = g.node('Cast', ['X'], ['X64'], { to: 11 });
  g.node('ReduceMean', [x], ['mean'], { axes: ints([0]), keepdims: 1 });
  g.node('Sub', [x, 'mean'], ['Xc']);
  g.node('Transpose', ['Xc'], ['XcT'], { perm: ints([1, 0]) });
  g.node('MatMul', ['XcT', 'Xc'], ['G']);
  g.output('mean', t, [1, width]);
  g.output('G', t, [width, width]);
  return g.toModel({ opset: 17 });
}

export interface GramResult {
  n: number;
  mean: Float32Array | Float64Array;
  /** Row-major [d, d], symmetric. */
  gram: Float32Array | Float64Array;
}

/** One ORT session per (width, compute), created on first use. */
export class GramRunner {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(private readonly settings: SessionSettings = defaultSessionSettings()) {}

  private session(width: number, compute: GramCompute): Promise<ort.InferenceSession> {
    const key = `${width}/${compute}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(buildGramModel(width, compute), this.settings, { where: `correlation gram graph (width ${width})` });
      this.sessions.set(key, s);
    }
    return s;
  }

  async run(values: Float32Array, rows: number, width: number, compute: GramCompute): Promise<GramResult> {
    const session = await this.session(width, compute);
    const X = new ort.Tensor('float32', values.subarray(0, rows * width), [rows, width]);
    const out = await session.run({ X });
    return { n: rows, mean: out.mean.data as Float32Array | Float64Array, gram: out.G.data as Float32Array | Float64Array };
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
