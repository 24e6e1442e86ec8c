/**
 * The tiny ONNX graph behind the correlation estimator: for a batch X [n, d] it returns the column
 * means [1, d] and the upper triangle of the centred Gram matrix G = Xcᵀ·Xc with Xc = X − mean,
 * as column blocks (I ≤ J) of at most `block` neurons: G_IJ = Xc_Iᵀ·Xc_J. Only blocks on or above
 * the diagonal are multiplied, so for d ≫ block the product costs about half the FLOPs of the full
 * d×d GEMM; each block is still one large GEMM for ONNX Runtime. With `compute: 'float64'` the
 * input is cast to double first so a constant column centres to exactly zero and the Gram keeps
 * float64 precision (slower GEMM); 'float32' is the fast path.
 *
 * The graph also gives each column's min and max over the batch (of the float32 input, so exact),
 * which the estimator's constant-neuron test needs: ORT reduces them on its threads in a few ms,
 * where a JS pass over the batch took ~30 ms a key at 2,675 × 4,096 in the d_ff 4096 bench.
 *
 * Measured and not taken (2,821 × 4,096 float32, the d_ff 4096 bench's batch, 2-core AVX-512 VM):
 * this graph took about 190 ms a key, where half of one full MatMul of the same shape is about
 * 155 ms. Gemm with transA = 1 on Split or on Slice column blocks, in place of Transpose, Split and
 * MatMul, took the same time (medians 206.7–218.3 ms for the three forms in one paired run), and
 * blocks of 1,024 or 2,048 neurons were no faster than 512. The JS fold of the blocks into the
 * packed triangle (addBlocks) costs about 26 ms a key warm; a row-major walk of the triangle made
 * it 23 ms.
 */
import ort from 'onnxruntime-node';
import { GraphBuilder, ints, tensor } from '../../onnx/builder.ts';
import { createSession, defaultSessionSettings, type SessionSettings } from '../../onnx/session.ts';

export type GramCompute = 'float32' | 'float64';

/** Neurons per Gram block: large enough for GEMM efficiency, small enough that the triangle saves work. */
export const DEFAULT_GRAM_BLOCK = 512;

/** Column ranges [start, size) of the blocks of a width-d matrix. */
export function gramBlocks(width: number, block: number): { start: number; size: number }[] {
  const out: { start: number; size: number }[] = [];
  for (let s = 0; s < width; s += block) out.push({ start: s, size: Math.min(block, width - s) });
  return out;
}

const blockOutput = (a: number, b: number) => `G_${a}_${b}`;

export function buildGramModel(width: number, compute: GramCompute, block = DEFAULT_GRAM_BLOCK): Uint8Array {
  const g = new GraphBuilder(`centred_gram_${width}_${compute}_b${block}`);
  const t = compute === 'float64' ? 'double' : 'float';
  g.input('X', 'float', ['n', width]);
  g.node('ReduceMin', ['X'], ['min'], { axes: ints([0]), keepdims: 1 });
  g.node('ReduceMax', ['X'], ['max'], { axes: ints([0]), keepdims: 1 });
  g.output('min', 'float', [1, width]);
  g.output('max', 'float', [1, width]);
  let x = 'X';
  if (compute === 'float64') [x] = g.node('Cast', ['X'], ['X64'], { to: 11 });
  g.node('ReduceMean', [x], ['mean'], { axes: ints([0]), keepdims: 1 });
  g.node('Sub', [x, 'mean'], ['Xc']);
  g.node('Transpose', ['Xc'], ['XcT'], { perm: ints([1, 0]) });
  g.output('mean', t, [1, width]);
  const blocks = gramBlocks(width, block);
  let rows = ['XcT'], cols = ['Xc'];
  if (blocks.length > 1) {
    const sizes = g.initializer('block_sizes', tensor('int64', [blocks.length], BigInt64Array.from(blocks, (b) => BigInt(b.size))));
    rows = g.node('Split', ['XcT', sizes], blocks.length, { axis: 0 }); // [b_I, n]
    cols = g.node('Split', ['Xc', sizes], blocks.length, { axis: 1 }); // [n, b_J]
  }
  for (let a = 0; a < blocks.length; a++)
    for (let b = a; b < blocks.length; b++) {
      g.node('MatMul', [rows[a], cols[b]], [blockOutput(a, b)]);
      g.output(blockOutput(a, b), t, [blocks[a].size, blocks[b].size]);
    }
  return g.toModel({ opset: 17 });
}

/** One block G_IJ (I ≤ J) of the centred Gram, row-major [rowSize, colSize]. */
export interface GramBlock {
  row: number;
  rowSize: number;
  col: number;
  colSize: number;
  data: Float32Array | Float64Array;
}

export interface GramResult {
  n: number;
  mean: Float32Array | Float64Array;
  /** Each column's smallest and largest value in the batch (exact: reduced from the float32 input). */
  min: Float32Array;
  max: Float32Array;
  /** The blocks on and above the diagonal; together they hold every (i, j) with i ≤ j. */
  blocks: GramBlock[];
}

/** G[i][j] for i ≤ j, read from the blocks (tests and checks; the estimator walks blocks directly). */
export function gramAt(r: GramResult, i: number, j: number): number {
  if (i > j) [i, j] = [j, i];
  for (const b of r.blocks)
    if (i >= b.row && i < b.row + b.rowSize && j >= b.col && j < b.col + b.colSize) return b.data[(i - b.row) * b.colSize + (j - b.col)];
  throw new RangeError(`(${i}, ${j}) is in no Gram block`);
}

/** One ORT session per (width, compute), created on first use. */
export class GramRunner {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(private readonly settings: SessionSettings = defaultSessionSettings(), readonly block = DEFAULT_GRAM_BLOCK) {}

  private session(width: number, compute: GramCompute): Promise<ort.InferenceSession> {
    const key = `${width}/${compute}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(buildGramModel(width, compute, this.block), this.settings, { where: `correlation gram graph (width ${width})` });
      this.sessions.set(key, s);
    }
    return s;
  }

  async run(values: Float32Array, rows: number, width: number, compute: GramCompute): Promise<GramResult> {
    const session = await this.session(width, compute);
    const X = new ort.Tensor('float32', values.subarray(0, rows * width), [rows, width]);
    const out = await session.run({ X });
    const ranges = gramBlocks(width, this.block);
    const blocks: GramBlock[] = [];
    for (let a = 0; a < ranges.length; a++)
      for (let b = a; b < ranges.length; b++)
        blocks.push({ row: ranges[a].start, rowSize: ranges[a].size, col: ranges[b].start, colSize: ranges[b].size, data: out[blockOutput(a, b)].data as Float32Array | Float64Array });
    return { n: rows, mean: out.mean.data as Float32Array | Float64Array, min: out.min.data as Float32Array, max: out.max.data as Float32Array, blocks };
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
