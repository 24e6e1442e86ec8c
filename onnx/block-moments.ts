/**
 * The pipeline's in-graph batch moments: float32 where that is exact enough, float64 where it is
 * not. Nodes appended to the model (a fragment, see builder.ts) reduce each captured [B, T, d_ff]
 * activation inside the same session.run to vectors of width d_ff:
 *
 *   xc    = the real tokens' rows gathered into blocks of 8 (REAL_ROWS, fed per batch) [G, 8, d_ff]
 *   Σx    (float64)                          shift = Σx / (rows gathered), rounded to float32
 *   s1 = Σx − n·shift                        (in read(), float64)
 *   s2 = Σ_g (BLOCKS·d²)_g                   d = xc − shift in float32; block sums as batched
 *                                            GEMVs, added in float64
 *   min / max over xc                        nearZero = BLOCKS·[lo < xc < hi] over all rows, one
 *                                            MatMulInteger GEMV of uint8 flags (exact, int32)
 *
 * BLOCKS [G, 1, 8] weighs each gathered row 1, or 0 for the repeats of the first real row that
 * fill the last block, and up to 3 more blocks so that G is a whole number of groups (blockLayout;
 * harmless to min and max; read() subtracts them from Σx, which the graph takes over every
 * gathered row). Pads never enter. ColumnMoments then Chan-merges the batch
 * (mergeShiftedSums) exactly like its own JS pass. Why this form: measured on the demo bench model
 * (bench/pipeline.ts reports it) it costs a fraction of the float64 two-pass fragment that
 * moment-stats.ts keeps for activations already in JS: ORT's GEMVs read each value once at memory
 * speed, while casting every value to float64, Where masks and ReduceSumSquare each cost a slow
 * full pass. Min, max and the float64 Σx reduce within each block's 8 rows first, then within
 * groups of 4–8 blocks (GROUP_SHAPE, fed), then across the groups (reduceInThree; s2's block sums
 * take the last two steps): ORT 1.30 reduces over all rows of a [rows, W] tensor with a strided
 * scalar loop for these three (ReduceMin of one [2304, 1024] float32 tensor: 70 ms in one step,
 * 15 ms in two, on the shared 2-core machine), and over the middle axis of [K, R, W] takes its
 * vectorised paths. The group step leaves that slow row loop G/r rows instead of G: in ORT's
 * profile of the demo bench model the steps after the blocks' went from 1.1–1.4 % of the model's
 * kernel time (one step over the G block rows, four reductions per site) to 0.8–1.0 %. Min and
 * max are exact either way; the float64 sums only add their terms in another order.
 *
 * Where the fragment's time goes (bench/pipeline-profile.ts: ORT's profile of the pipeline's
 * session, each node's min over 3 repeats per batch, as a share of the model's own kernel time;
 * `npm run bench -- --only pipeline` on the shared 2-core machine at load 5–10): demo bench model
 * 14.2 % in all: float64 Σx 5.2 % (mostly its Cast to float64), centred squares 3.4 %, min/max
 * 1.9 %, compares 1.6 %, Gather 1.5 %, counts 0.6 %; the 51M bench model 1.0 % in all. The
 * shares move with the load (7.2 % in all on the demo model at load ≈ 8 in another run). With the
 * group step, two runs at load 2–3: demo 14.5 % and 14.7 % in all (Σx 5.1–5.4 %, squares
 * 3.7 %, min/max 1.7–1.8 %), 51M 2.9 % and 3.2 %; the two-step form's run between them: 14.1 %
 * and 2.6 %. Run to run the bench spreads wider than the group step's gain, which only the
 * paired profiles (same process, alternated) resolve.
 *
 * Accuracy (test/onnx/block-moments.test.ts bounds it against a float64 brute force): the mean is
 * Σx/n in float64 from the exact float32 values, as the brute force computes it. Rounding d to
 * float32 moves each term by at most ε|d| (ε = 2⁻²⁴) and a float32 sum of k ≤ 8 terms errs by at
 * most γ_8 = 8ε/(1 − 8ε) of their sum, so Σd² is within (γ_8 + 3ε)·Σd². Centred on the batch
 * mean, M2 = Σd² − s1²/n has no cancellation however far activations sit from zero. Σx is float64
 * because float32 sums (of x or of d, blocks of 4 to 256) left the mean of a neuron centred near
 * zero (|mean| ≈ 0.001·std, stories260K) at 7e-7 to 2e-6 relative, where its brute-force test
 * allows 1e-6; the float64 cast costs about a fifth of the fragment. Float32 sums within blocks
 * of b rows with only the partials added in float64 miss test/onnx/block-moments.test.ts's mean
 * bound (the float64 scan's, 1e-12) on its planted columns by 6·10² to 1.5·10⁵ times for b = 2 to
 * 16; b = 1 is the cast of every value. That Cast runs on one thread in ORT 1.30 (2.0 ms for one
 * [2304, 1024] tensor with 1 or 2 intra-op threads, where min/max, Sub and Mul take 0.6–0.7 of
 * their one-thread time with 2), which is why it leads the profile.
 *
 * Measured and not taken: an exact float32 split of each value, hi = fl(x + C) − C and lo = x − hi
 * with C = 32·max|x| per column (hi on one grid, so a block's 8 hi sum exactly; the mean within
 * 1e-12·max|x| of the scan, and the test's bounds held with its worst mean error 0), in place of the
 * Cast. Alone on an Identity model (3 sites of [2304, 1024], 2 threads) the fragment went 1.50–1.59
 * → 1.34–1.39 ns a value, but inside the demo bench model's session ORT's profile gave the same
 * fragment share (three paired rounds: 16.6 % old, 16.2–16.9 % split; the 51M model 2.9–3.1 %
 * both): five float32 passes cost what the Cast and its float64 sum cost. It might win with more
 * intra-op threads than this 2-core machine has (the Cast does not use them).
 */
import ort from 'onnxruntime-node';
import type { BatchMoments } from '../core/types.ts';
import { tensor, type GraphFragment } from './builder.ts';
import { rowStart, type PadSide } from './feeds.ts';
import { NEAR_HI, NEAR_LO, type MomentSite } from './moment-stats.ts';

/** int32 [G·8]: flat row index b·T + t of every real token of the batch in batch order, then repeats of the first to G·8 (blockLayout). */
export const REAL_ROWS = 'quantlens/bm/real_rows';
/** float32 [G, 1, 8]: each gathered row's weight, 1 or 0 for a repeat (see the header). */
export const BLOCKS = 'quantlens/bm/blocks';
/** Rows per float32 block sum. */
export const BLOCK_ROWS = 8;
/**
 * int64 [3]: [−1, r, 0], the shape that regroups the [G, 1, W] block partials into [G/r, r, W]
 * (0 copies W) for the middle step of reduceInThree; r divides G (blockLayout, fed per batch).
 */
export const GROUP_SHAPE = 'quantlens/bm/group_shape';
/** The block counts a group may hold (blockLayout): at most 3 extra blocks make G a multiple of one of them. */
const GROUP_SIZES = [8, 7, 6, 5, 4];
/** Up to this many blocks, one group holds them all (r = G). */
const ONE_GROUP_MAX = 16;

export interface BlockMomentsNames {
  /** The first gathered row: the value the weight-0 repeats carry. */
  first: string;
  shift: string;
  /** Σx over every gathered row, float64. */
  sum: string;
  s2: string;
  min: string;
  max: string;
  nearZero: string;
}

export function blockMomentsNames(k: number): BlockMomentsNames {
  const p = `quantlens/bm_${k}`;
  return { first: `${p}/first`, shift: `${p}/shift`, sum: `${p}/sum`, s2: `${p}/s2`, min: `${p}/min`, max: `${p}/max`, nearZero: `${p}/near_zero` };
}

type Nodes = NonNullable<GraphFragment['nodes']>;
type Inits = NonNullable<GraphFragment['initializers']>;

/** A reduction over `axes` in the form the opset wants (axes as attribute, or as an input from 13 / 18). */
function reduce(nodes: Nodes, inits: Inits, op: string, input: string, output: string, axes: number[], keepdims: number, opset: number): void {
  const asInput = op === 'ReduceSum' ? opset >= 13 : opset >= 18;
  if (!asInput) return void nodes.push({ opType: op, inputs: [input], outputs: [output], attrs: { axes, keepdims } });
  const name = `${output}/axes`;
  inits.push({ name, ...tensor('int64', [axes.length], BigInt64Array.from(axes.map(BigInt))) });
  nodes.push({ opType: op, inputs: [input, name], outputs: [output], attrs: { keepdims } });
}

/**
 * A reduction of [G, 8, W] to [W] in three steps: over each block's 8 rows (axis 1), over each
 * group of r blocks (GROUP_SHAPE), then over the G/r groups. ORT 1.30 reduces a [rows, W] tensor
 * over its rows (axis 0) with a strided scalar loop for Min, Max and float64 Sum, and over the
 * middle axis of [K, R, W] on its vectorised paths (measured in the header); the middle step
 * leaves G/r ≤ G/4 rows (or 1) to the slow last step instead of G.
 */
function reduceInThree(nodes: Nodes, inits: Inits, op: string, input: string, output: string, opset: number): void {
  reduce(nodes, inits, op, input, `${output}/blocks`, [1], 1, opset);
  regroupAndFinish(nodes, inits, op, `${output}/blocks`, output, opset);
}

/** [G, 1, W] block partials → [G/r, r, W] → [G/r, W] → [W] (the last two steps of reduceInThree). */
function regroupAndFinish(nodes: Nodes, inits: Inits, op: string, partials: string, output: string, opset: number): void {
  nodes.push({ opType: 'Reshape', inputs: [partials, GROUP_SHAPE], outputs: [`${output}/grouped`] });
  reduce(nodes, inits, op, `${output}/grouped`, `${output}/groups`, [1], 0, opset);
  reduce(nodes, inits, op, `${output}/groups`, output, [0], 0, opset);
}

/**
 * nearZero = BLOCKS·inside as one GEMV over all gathered rows, exact: from opset 10 the 0/1 flags
 * go to uint8 and MatMulInteger sums them in int32, so the full-size intermediate is one byte per
 * value, not a float32 copy, and no second reduction follows; before opset 10, float32 flags and
 * MatMul (exact below 2^24 rows). ORT's profile on the demo bench model, both forms in one run
 * (each node's min over 6 repeats): 0.21 % of the model's kernel time, against 0.72 % for float32
 * flags, a per-block MatMul and a ReduceSum.
 */
function countInside(nodes: Nodes, inits: Inits, v: (s: string) => string, width: number, output: string, opset: number): void {
  const integer = opset >= 10;
  inits.push({ name: v('flags_shape'), ...tensor('int64', [2], BigInt64Array.from([-1n, BigInt(width)])) });
  nodes.push({ opType: 'Cast', inputs: [v('inside')], outputs: [v('inside_n')], attrs: { to: integer ? 2 : 1 } });
  nodes.push({ opType: 'Reshape', inputs: [v('inside_n'), v('flags_shape')], outputs: [v('inside_rows')] });
  nodes.push({ opType: integer ? 'MatMulInteger' : 'MatMul', inputs: [integer ? WEIGHT_ROW_U8 : WEIGHT_ROW, v('inside_rows')], outputs: [v('nz_row')] });
  nodes.push({ opType: 'Reshape', inputs: [v('nz_row'), 'quantlens/bm/flat'], outputs: [output] });
}

/** BLOCKS as one row [1, G·8] (float32 and uint8), the weights of the count GEMV (countInside). */
const WEIGHT_ROW = 'quantlens/bm/weight_row';
const WEIGHT_ROW_U8 = 'quantlens/bm/weight_row_u8';

/**
 * Nodes computing the block moments of each tensor; `opset` is the model's default-domain opset.
 * Each site's nodes come before the previous site's (the last site first, site 0 last): ORT's
 * default execution order is a reverse DFS from the graph's leaves, highest node index first, so
 * this order runs each site's statistics right after its activation is computed, while the
 * tensor may still be in cache, instead of all of them after the last site's (ORT's profile shows
 * the new order; its effect on time was within the shared machine's noise).
 */
export function blockMomentsFragment(tensors: { name: string; width: number }[], opset: number): GraphFragment {
  const nodes: Nodes = [];
  const initializers: Inits = [];
  const inputs: NonNullable<GraphFragment['inputs']> = [
    { name: NEAR_LO, type: 'float', dims: [] },
    { name: NEAR_HI, type: 'float', dims: [] },
    { name: REAL_ROWS, type: 'int32', dims: ['quantlens_gathered_rows'] },
    { name: BLOCKS, type: 'float', dims: ['quantlens_blocks', 1, BLOCK_ROWS] },
    { name: GROUP_SHAPE, type: 'int64', dims: [3] },
  ];
  // The shift divides by every gathered row, so a constant column's shift is exact (and its M2 0).
  nodes.push({ opType: 'Shape', inputs: [REAL_ROWS], outputs: ['quantlens/bm/gathered'] });
  nodes.push({ opType: 'Cast', inputs: ['quantlens/bm/gathered'], outputs: ['quantlens/bm/n64'], attrs: { to: 11 } });
  initializers.push({ name: 'quantlens/bm/zero', ...tensor('int64', [], BigInt64Array.of(0n)) });
  initializers.push({ name: 'quantlens/bm/row_shape', ...tensor('int64', [2], BigInt64Array.from([1n, -1n])) });
  initializers.push({ name: 'quantlens/bm/flat', ...tensor('int64', [1], BigInt64Array.from([-1n])) });
  nodes.push({ opType: 'Reshape', inputs: [BLOCKS, 'quantlens/bm/row_shape'], outputs: [WEIGHT_ROW] });
  if (opset >= 10) nodes.push({ opType: 'Cast', inputs: [WEIGHT_ROW], outputs: [WEIGHT_ROW_U8], attrs: { to: 2 } });
  const sites = tensors.map((t, k) => siteNodes(t, k, opset));
  for (const site of [...sites].reverse()) nodes.push(...site.nodes);
  for (const site of sites) initializers.push(...site.initializers);
  // Named after their outputs, so ORT's profile names them (unnamed nodes get a counter).
  for (const node of nodes) node.name ??= node.outputs[0];
  const outputs = tensors.flatMap((_, k) => {
    const n = blockMomentsNames(k);
    return [n.first, n.shift, n.sum, n.s2, n.min, n.max, n.nearZero].map((name) => ({ name }));
  });
  return { nodes, initializers, inputs, outputs };
}

/** The nodes (and their constants) of site k's statistics, reading tensor `t`. */
function siteNodes(t: { name: string; width: number }, k: number, opset: number): { nodes: Nodes; initializers: Inits } {
  const nodes: Nodes = [];
  const initializers: Inits = [];
  const n = blockMomentsNames(k);
  const v = (s: string) => `quantlens/bm_${k}/${s}`;
  initializers.push({ name: v('rows_shape'), ...tensor('int64', [2], BigInt64Array.from([-1n, BigInt(t.width)])) });
  initializers.push({ name: v('blocks_shape'), ...tensor('int64', [3], BigInt64Array.from([-1n, BigInt(BLOCK_ROWS), BigInt(t.width)])) });
  // A same-type Cast is removed by ORT's optimizer; it keeps the fragment correct for any float input.
  nodes.push({ opType: 'Cast', inputs: [t.name], outputs: [v('xf')], attrs: { to: 1 } });
  nodes.push({ opType: 'Reshape', inputs: [v('xf'), v('rows_shape')], outputs: [v('x2d')] });
  nodes.push({ opType: 'Gather', inputs: [v('x2d'), REAL_ROWS], outputs: [v('xg')], attrs: { axis: 0 } });
  nodes.push({ opType: 'Reshape', inputs: [v('xg'), v('blocks_shape')], outputs: [v('xc')] });
  // Each reduction runs within the blocks first (axis 1), then within groups of blocks, then across them: see the header.
  reduceInThree(nodes, initializers, 'ReduceMin', v('xc'), n.min, opset);
  reduceInThree(nodes, initializers, 'ReduceMax', v('xc'), n.max, opset);
  // Σx in float64 over every gathered row (the mean is read off it: see the header); read()
  // takes the weight-0 repeats back out. The shift needs only be near the mean: repeats stay in it.
  nodes.push({ opType: 'Cast', inputs: [v('xc')], outputs: [v('x64')], attrs: { to: 11 } });
  reduceInThree(nodes, initializers, 'ReduceSum', v('x64'), n.sum, opset);
  nodes.push({ opType: 'Div', inputs: [n.sum, 'quantlens/bm/n64'], outputs: [v('mean64')] });
  nodes.push({ opType: 'Cast', inputs: [v('mean64')], outputs: [n.shift], attrs: { to: 1 } });
  nodes.push({ opType: 'Sub', inputs: [v('xc'), n.shift], outputs: [v('d')] });
  nodes.push({ opType: 'Mul', inputs: [v('d'), v('d')], outputs: [v('d2')] });
  nodes.push({ opType: 'Gather', inputs: [v('xg'), 'quantlens/bm/zero'], outputs: [n.first], attrs: { axis: 0 } });
  nodes.push({ opType: 'MatMul', inputs: [BLOCKS, v('d2')], outputs: [v('s2_blocks')] });
  nodes.push({ opType: 'Cast', inputs: [v('s2_blocks')], outputs: [v('s2_blocks64')], attrs: { to: 11 } });
  regroupAndFinish(nodes, initializers, 'ReduceSum', v('s2_blocks64'), n.s2, opset);
  nodes.push({ opType: 'Greater', inputs: [v('xc'), NEAR_LO], outputs: [v('above')] });
  nodes.push({ opType: 'Less', inputs: [v('xc'), NEAR_HI], outputs: [v('below')] });
  nodes.push({ opType: 'And', inputs: [v('above'), v('below')], outputs: [v('inside')] });
  countInside(nodes, initializers, v, t.width, n.nearZero, opset);
  return { nodes, initializers };
}

/** The batch geometry the feeds are built from. */
export interface BatchShape {
  lengths: Int32Array;
  seqLen: number;
  padSide?: PadSide;
}

/**
 * REAL_ROWS and BLOCKS of a batch: row b's real tokens sit at columns rowStart … rowStart + len − 1;
 * the rows after the last real one (to a whole number of groups of blocks, blockLayout) repeat
 * the first real row, weighted 0.
 */
export function blockFeeds(shape: BatchShape): { rows: Int32Array; weights: Float32Array; blocks: number; group: number } {
  let n = 0;
  for (const len of shape.lengths) n += len;
  const { blocks, group } = blockLayout(n);
  const rows = new Int32Array(blocks * BLOCK_ROWS);
  const weights = new Float32Array(blocks * BLOCK_ROWS);
  let r = 0;
  shape.lengths.forEach((len, b) => {
    const start = b * shape.seqLen + rowStart({ padSide: shape.padSide }, shape.seqLen, len);
    for (let p = 0; p < len; p++) rows[r++] = start + p;
  });
  weights.fill(1, 0, n);
  rows.fill(rows[0], n);
  return { rows, weights, blocks, group };
}

/**
 * How n rows are laid out: `blocks` blocks of BLOCK_ROWS (at least one), in groups of `group`
 * blocks (reduceInThree). Up to ONE_GROUP_MAX blocks form one group; beyond, the fewest blocks
 * ≥ ⌈n / BLOCK_ROWS⌉ that some size in GROUP_SIZES divides (any 4 consecutive counts hold a
 * multiple of 4, so at most 3 blocks of repeats are added), the larger size on a tie.
 */
export function blockLayout(n: number): { blocks: number; group: number } {
  const needed = Math.max(1, Math.ceil(n / BLOCK_ROWS));
  if (needed <= ONE_GROUP_MAX) return { blocks: needed, group: needed };
  let best = { blocks: Infinity, group: 1 };
  for (const r of GROUP_SIZES) {
    const blocks = Math.ceil(needed / r) * r;
    if (blocks < best.blocks) best = { blocks, group: r };
  }
  return best;
}

/** Blocks of BLOCK_ROWS the feeds of n rows hold (blockLayout). */
export function blockCount(n: number): number {
  return blockLayout(n).blocks;
}

/** The block moments of a session: which sites they cover (in fragment order), feeds, fetches, decoding. */
export class BlockMoments {
  private readonly bounds: Record<string, ort.Tensor>;

  constructor(readonly sites: MomentSite[], bounds: { lo: number; hi: number }) {
    this.bounds = {
      [NEAR_LO]: new ort.Tensor('float32', Float32Array.of(bounds.lo), []),
      [NEAR_HI]: new ort.Tensor('float32', Float32Array.of(bounds.hi), []),
    };
  }

  /** Feeds for the inputs the fragment added: needed on every run of the session, whatever it fetches. */
  feeds(shape: BatchShape): Record<string, ort.Tensor> {
    if (!this.sites.length) return {};
    const { rows, weights, blocks, group } = blockFeeds(shape);
    return {
      ...this.bounds,
      [REAL_ROWS]: new ort.Tensor('int32', rows, [rows.length]),
      [BLOCKS]: new ort.Tensor('float32', weights, [blocks, 1, BLOCK_ROWS]),
      [GROUP_SHAPE]: new ort.Tensor('int64', BigInt64Array.of(-1n, BigInt(group), 0n), [3]),
    };
  }

  fetches(): string[] {
    return this.sites.flatMap((_, k) => {
      const n = blockMomentsNames(k);
      return [n.first, n.shift, n.sum, n.s2, n.min, n.max, n.nearZero];
    });
  }

  /** The outputs of one run as one BatchMoments per site, over `rows` real tokens. */
  read(out: Record<string, ort.Tensor>, rows: number, precision: string): BatchMoments[] {
    return this.sites.map((site, k): BatchMoments => {
      const n = blockMomentsNames(k);
      const shift32 = out[n.shift].data as Float32Array;
      const first = out[n.first].data as Float32Array;
      const sum = out[n.sum].data as Float64Array;
      const repeats = blockCount(rows) * BLOCK_ROWS - rows;
      // Σ(x − shift) over the real rows, in float64 from the exact float32 values.
      const s1 = Float64Array.from(sum, (s, c) => s - repeats * first[c] - rows * shift32[c]);
      return {
        precision,
        layer: site.layer,
        tensor: site.tensor,
        width: site.width!,
        rows,
        shift: Float64Array.from(shift32),
        s1,
        s2: out[n.s2].data as Float64Array,
        min: out[n.min].data as Float32Array,
        max: out[n.max].data as Float32Array,
        nearZero: Float64Array.from(out[n.nearZero].data as Int32Array | Float32Array),
      };
    });
  }
}
