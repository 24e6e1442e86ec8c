/**
 * The pipeline's in-graph batch moments, in float32 blocks merged in float64. Nodes appended to
 * the model (a fragment, see builder.ts) reduce each captured [B, T, d_ff] activation inside the
 * same session.run to six vectors of width d_ff:
 *
 *   xc    = the real tokens' rows gathered into blocks of 8 (REAL_ROWS, fed per batch) [G, 8, d_ff]
 *   shift = Σ BLOCKS·xc / n                 the batch mean, rounded to float32
 *   s1 = Σ_g (BLOCKS·d)_g,  s2 = Σ_g (BLOCKS·d²)_g      d = xc − shift; block sums in float32
 *                                            (batched GEMVs), added over blocks in float64
 *   min / max over xc                        nearZero = Σ BLOCKS·[lo < xc < hi]   (exact)
 *
 * BLOCKS [G, 1, 8] weighs each gathered row 1, or 0 for the repeats of a real row that fill the
 * last block (harmless to min and max). Pads never enter. ColumnMoments then Chan-merges the batch
 * (mergeShiftedSums) exactly like its own JS pass. Why this form: measured on the demo bench model
 * (bench/pipeline.ts reports it) it costs a fraction of the float64 two-pass fragment that
 * moment-stats.ts keeps for activations already in JS: ORT's GEMVs read each value once at memory
 * speed, while casting every value to float64, Where masks and ReduceSumSquare each cost a slow
 * full pass.
 *
 * Accuracy (test/onnx/block-moments.test.ts bounds it against a float64 brute force): a float32
 * sum of k ≤ 8 terms errs by at most γ_8 = 8ε/(1 − 8ε) of the sum of their magnitudes (ε = 2⁻²⁴),
 * plus ε for rounding d itself, so Σd is within e1 = (γ_8 + ε)·Σ|d| and Σd² within (γ_8 + 3ε)·Σd²;
 * in practice the errors are random and the mean is good to ~ε·std·√(4/n). Both sums are centred
 * on the batch mean, so M2 = Σd² − (Σd)²/n has no cancellation however far activations sit from
 * zero, and a constant column gives M2 = 0. Blocks of 8 (not 256) because a long run's mean of a
 * neuron centred near zero must stay within 1e-6 relative of the float64 scan.
 */
import ort from 'onnxruntime-node';
import type { BatchMoments } from '../core/types.ts';
import { tensor, type GraphFragment } from './builder.ts';
import { rowStart, type PadSide } from './feeds.ts';
import { NEAR_HI, NEAR_LO, type MomentSite } from './moment-stats.ts';

/** int32 [G·8]: flat row index b·T + t of every real token of the batch in batch order, the last block filled with repeats. */
export const REAL_ROWS = 'quantlens/bm/real_rows';
/** float32 [G, 1, 8]: each gathered row's weight, 1 or 0 for a repeat (see the header). */
export const BLOCKS = 'quantlens/bm/blocks';
/** Rows per float32 block sum. */
export const BLOCK_ROWS = 8;

export interface BlockMomentsNames {
  shift: string;
  s1: string;
  s2: string;
  min: string;
  max: string;
  nearZero: string;
}

export function blockMomentsNames(k: number): BlockMomentsNames {
  const p = `quantlens/bm_${k}`;
  return { shift: `${p}/shift`, s1: `${p}/s1`, s2: `${p}/s2`, min: `${p}/min`, max: `${p}/max`, nearZero: `${p}/near_zero` };
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

/** Nodes computing the block moments of each tensor; `opset` is the model's default-domain opset. */
export function blockMomentsFragment(tensors: { name: string; width: number }[], opset: number): GraphFragment {
  const nodes: Nodes = [];
  const initializers: Inits = [];
  const inputs: NonNullable<GraphFragment['inputs']> = [
    { name: NEAR_LO, type: 'float', dims: [] },
    { name: NEAR_HI, type: 'float', dims: [] },
    { name: REAL_ROWS, type: 'int32', dims: ['quantlens_gathered_rows'] },
    { name: BLOCKS, type: 'float', dims: ['quantlens_blocks', 1, BLOCK_ROWS] },
  ];
  const outputs: NonNullable<GraphFragment['outputs']> = [];
  // n = Σ weights (a float scalar): the real tokens, for the mean.
  reduce(nodes, initializers, 'ReduceSum', BLOCKS, 'quantlens/bm/n', [0, 1, 2], 0, opset);
  tensors.forEach((t, k) => {
    const n = blockMomentsNames(k);
    const v = (s: string) => `quantlens/bm_${k}/${s}`;
    initializers.push({ name: v('rows_shape'), ...tensor('int64', [2], BigInt64Array.from([-1n, BigInt(t.width)])) });
    initializers.push({ name: v('blocks_shape'), ...tensor('int64', [3], BigInt64Array.from([-1n, BigInt(BLOCK_ROWS), BigInt(t.width)])) });
    // A same-type Cast is removed by ORT's optimizer; it keeps the fragment correct for any float input.
    nodes.push({ opType: 'Cast', inputs: [t.name], outputs: [v('xf')], attrs: { to: 1 } });
    nodes.push({ opType: 'Reshape', inputs: [v('xf'), v('rows_shape')], outputs: [v('x2d')] });
    nodes.push({ opType: 'Gather', inputs: [v('x2d'), REAL_ROWS], outputs: [v('xg')], attrs: { axis: 0 } });
    nodes.push({ opType: 'Reshape', inputs: [v('xg'), v('blocks_shape')], outputs: [v('xc')] });
    reduce(nodes, initializers, 'ReduceMin', v('xc'), n.min, [0, 1], 0, opset);
    reduce(nodes, initializers, 'ReduceMax', v('xc'), n.max, [0, 1], 0, opset);
    nodes.push({ opType: 'MatMul', inputs: [BLOCKS, v('xc')], outputs: [v('sums')] });
    reduce(nodes, initializers, 'ReduceSum', v('sums'), v('total'), [0, 1], 0, opset);
    nodes.push({ opType: 'Div', inputs: [v('total'), 'quantlens/bm/n'], outputs: [n.shift] });
    nodes.push({ opType: 'Sub', inputs: [v('xc'), n.shift], outputs: [v('d')] });
    nodes.push({ opType: 'Mul', inputs: [v('d'), v('d')], outputs: [v('d2')] });
    for (const [input, out] of [[v('d'), n.s1], [v('d2'), n.s2]]) {
      nodes.push({ opType: 'MatMul', inputs: [BLOCKS, input], outputs: [`${out}/blocks`] });
      nodes.push({ opType: 'Cast', inputs: [`${out}/blocks`], outputs: [`${out}/blocks64`], attrs: { to: 11 } });
      reduce(nodes, initializers, 'ReduceSum', `${out}/blocks64`, out, [0, 1], 0, opset);
    }
    nodes.push({ opType: 'Greater', inputs: [v('xc'), NEAR_LO], outputs: [v('above')] });
    nodes.push({ opType: 'Less', inputs: [v('xc'), NEAR_HI], outputs: [v('below')] });
    nodes.push({ opType: 'And', inputs: [v('above'), v('below')], outputs: [v('inside')] });
    nodes.push({ opType: 'Cast', inputs: [v('inside')], outputs: [v('inside32')], attrs: { to: 1 } });
    nodes.push({ opType: 'MatMul', inputs: [BLOCKS, v('inside32')], outputs: [v('nz_blocks')] });
    // Counts of 0/1 stay exact in float32 while a batch has fewer than 2^24 real tokens.
    reduce(nodes, initializers, 'ReduceSum', v('nz_blocks'), n.nearZero, [0, 1], 0, opset);
    outputs.push({ name: n.shift }, { name: n.s1 }, { name: n.s2 }, { name: n.min }, { name: n.max }, { name: n.nearZero });
  });
  return { nodes, initializers, inputs, outputs };
}

/** The batch geometry the feeds are built from. */
export interface BatchShape {
  lengths: Int32Array;
  seqLen: number;
  padSide?: PadSide;
}

/**
 * REAL_ROWS and BLOCKS of a batch: row b's real tokens sit at columns rowStart … rowStart + len − 1;
 * the last block is filled with repeats of the first real row, weighted 0.
 */
export function blockFeeds(shape: BatchShape): { rows: Int32Array; weights: Float32Array; blocks: number } {
  let n = 0;
  for (const len of shape.lengths) n += len;
  const blocks = Math.max(1, Math.ceil(n / BLOCK_ROWS));
  const rows = new Int32Array(blocks * BLOCK_ROWS);
  const weights = new Float32Array(blocks * BLOCK_ROWS);
  let r = 0;
  shape.lengths.forEach((len, b) => {
    const start = b * shape.seqLen + rowStart({ padSide: shape.padSide }, shape.seqLen, len);
    for (let p = 0; p < len; p++) rows[r++] = start + p;
  });
  weights.fill(1, 0, n);
  rows.fill(rows[0], n);
  return { rows, weights, blocks };
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
    const { rows, weights, blocks } = blockFeeds(shape);
    return { ...this.bounds, [REAL_ROWS]: new ort.Tensor('int32', rows, [rows.length]), [BLOCKS]: new ort.Tensor('float32', weights, [blocks, 1, BLOCK_ROWS]) };
  }

  fetches(): string[] {
    return this.sites.flatMap((_, k) => {
      const n = blockMomentsNames(k);
      return [n.shift, n.s1, n.s2, n.min, n.max, n.nearZero];
    });
  }

  /** The outputs of one run as one BatchMoments per site, over `rows` real tokens. */
  read(out: Record<string, ort.Tensor>, rows: number, precision: string): BatchMoments[] {
    return this.sites.map((site, k): BatchMoments => {
      const n = blockMomentsNames(k);
      return {
        precision,
        layer: site.layer,
        tensor: site.tensor,
        width: site.width!,
        rows,
        shift: Float64Array.from(out[n.shift].data as Float32Array),
        s1: out[n.s1].data as Float64Array,
        s2: out[n.s2].data as Float64Array,
        min: out[n.min].data as Float32Array,
        max: out[n.max].data as Float32Array,
        nearZero: Float64Array.from(out[n.nearZero].data as Float32Array),
      };
    });
  }
}
