/**
 * In-graph batch moments. When a run needs only per-neuron statistics of a captured tensor
 * (neurons, dead), copying the whole [B, T, d_ff] activation out of ONNX Runtime and scanning it
 * in JS costs more than the statistics: instead, nodes appended to the model (as a fragment, see
 * builder.ts) reduce it inside the same session.run to six vectors of width d_ff:
 *
 *   shift = Σ mask·x / Σ mask     (the batch mean, float64)
 *   s1 = Σ mask·(x − shift)       s2 = Σ mask·(x − shift)²          (float64, as GEMVs)
 *   min / max over real tokens    nearZero = Σ mask·[lo < x < hi]   (exact)
 *
 * over batch and sequence, with the attention mask excluding pad positions. Centring on the
 * batch's own mean (a two-pass sum, one extra GEMV) keeps M2 = s2 − s1²/n free of cancellation
 * however far activations sit from zero; ColumnMoments then Chan-merges the batch exactly like its
 * own JS pass (mergeShiftedSums). Node forms follow the model's opset (axes as attribute before
 * opset 13 / 18, as an input after).
 *
 * This module owns the whole mechanism: the fragment, the feeds it needs (InGraphMoments.feeds),
 * the fetches and the decoding of its outputs into BatchMoments (InGraphMoments.read), and the
 * standalone model that applies the same fragment to activations already in JS memory
 * (columnMomentsModel: the neurons estimator's path when a measure fetches the activations anyway).
 */
import ort from 'onnxruntime-node';
import type { BatchMoments } from '../core/types.ts';
import { appendGraphFragment, GraphBuilder, type GraphFragment } from './builder.ts';
import { tensor } from './builder.ts';

export interface MomentStatsNames {
  shift: string;
  s1: string;
  s2: string;
  min: string;
  max: string;
  nearZero: string;
}

export const NEAR_LO = 'quantlens/near_lo';
export const NEAR_HI = 'quantlens/near_hi';

export function momentStatsNames(k: number): MomentStatsNames {
  const p = `quantlens/moments_${k}`;
  return { shift: `${p}/shift`, s1: `${p}/s1`, s2: `${p}/s2`, min: `${p}/min`, max: `${p}/max`, nearZero: `${p}/near_zero` };
}

/** Nodes computing the statistics of each tensor; `opset` is the model's default-domain opset. */
export function momentStatsFragment(tensors: { name: string; width: number }[], maskName: string, opset: number): GraphFragment {
  const nodes: NonNullable<GraphFragment['nodes']> = [];
  const initializers: NonNullable<GraphFragment['initializers']> = [];
  const inputs: NonNullable<GraphFragment['inputs']> = [
    { name: NEAR_LO, type: 'float', dims: [] },
    { name: NEAR_HI, type: 'float', dims: [] },
  ];
  const outputs: NonNullable<GraphFragment['outputs']> = [];
  const q = (s: string) => `quantlens/ms/${s}`;
  const axes01 = q('axes01');
  if (opset >= 18) initializers.push({ name: axes01, ...tensor('int64', [2], BigInt64Array.from([0n, 1n])) });
  initializers.push({ name: q('inf'), ...tensor('float', [], Float32Array.of(Infinity)) });
  initializers.push({ name: q('ninf'), ...tensor('float', [], Float32Array.of(-Infinity)) });
  const reduce = (op: string, input: string, output: string) => {
    const axesAsInput = opset >= 18;
    nodes.push(
      axesAsInput
        ? { opType: op, inputs: [input, axes01], outputs: [output], attrs: { keepdims: 0 } }
        : { opType: op, inputs: [input], outputs: [output], attrs: { axes: [0, 1], keepdims: 0 } },
    );
  };
  // mask [B, T] (int) → bool [B, T, 1] for min/max, and a [1, B·T] row (float64 and float32)
  // so masked sums are one GEMV each: Σ_rows mask·v = mask_row · V[B·T, d].
  nodes.push({ opType: 'Cast', inputs: [maskName], outputs: [q('mask_b')], attrs: { to: 9 } });
  if (opset >= 13) {
    initializers.push({ name: q('axis2'), ...tensor('int64', [1], BigInt64Array.from([2n])) });
    nodes.push({ opType: 'Unsqueeze', inputs: [q('mask_b'), q('axis2')], outputs: [q('mask3')] });
  } else nodes.push({ opType: 'Unsqueeze', inputs: [q('mask_b')], outputs: [q('mask3')], attrs: { axes: [2] } });
  initializers.push({ name: q('row_shape'), ...tensor('int64', [2], BigInt64Array.from([1n, -1n])) });
  nodes.push({ opType: 'Cast', inputs: [maskName], outputs: [q('mask64')], attrs: { to: 11 } });
  nodes.push({ opType: 'Reshape', inputs: [q('mask64'), q('row_shape')], outputs: [q('row64')] });
  nodes.push({ opType: 'Cast', inputs: [maskName], outputs: [q('mask32')], attrs: { to: 1 } });
  nodes.push({ opType: 'Reshape', inputs: [q('mask32'), q('row_shape')], outputs: [q('row32')] });
  const squeeze = (input: string, output: string) => nodes.push({ opType: 'Reshape', inputs: [input, q('flat')], outputs: [output] });
  initializers.push({ name: q('flat'), ...tensor('int64', [1], BigInt64Array.from([-1n])) });
  // Real tokens in the batch (at least 1, so an all-pad batch gives zeros, not NaN), [1, 1].
  initializers.push({ name: q('one64'), ...tensor('double', [1, 1], Float64Array.of(1)) });
  nodes.push({ opType: 'ReduceSum', inputs: [q('row64')], outputs: [q('n_raw')], attrs: { keepdims: 1 } });
  nodes.push({ opType: 'Max', inputs: [q('n_raw'), q('one64')], outputs: [q('n')] });

  tensors.forEach((t, k) => {
    const n = momentStatsNames(k);
    const v = (s: string) => `quantlens/moments_${k}/${s}`;
    initializers.push({ name: v('rows_shape'), ...tensor('int64', [2], BigInt64Array.from([-1n, BigInt(t.width)])) });
    nodes.push({ opType: 'Cast', inputs: [t.name], outputs: [v('xf')], attrs: { to: 1 } });
    nodes.push({ opType: 'Reshape', inputs: [v('xf'), v('rows_shape')], outputs: [v('x2d')] });
    nodes.push({ opType: 'Cast', inputs: [v('x2d')], outputs: [v('x64')], attrs: { to: 11 } });
    nodes.push({ opType: 'MatMul', inputs: [q('row64'), v('x64')], outputs: [v('sum_row')] });
    nodes.push({ opType: 'Div', inputs: [v('sum_row'), q('n')], outputs: [v('mean_row')] });
    squeeze(v('mean_row'), n.shift);
    nodes.push({ opType: 'Sub', inputs: [v('x64'), v('mean_row')], outputs: [v('d')] });
    nodes.push({ opType: 'MatMul', inputs: [q('row64'), v('d')], outputs: [v('s1_row')] });
    squeeze(v('s1_row'), n.s1);
    nodes.push({ opType: 'Mul', inputs: [v('d'), v('d')], outputs: [v('d2')] });
    nodes.push({ opType: 'MatMul', inputs: [q('row64'), v('d2')], outputs: [v('s2_row')] });
    squeeze(v('s2_row'), n.s2);
    nodes.push({ opType: 'Where', inputs: [q('mask3'), v('xf'), q('inf')], outputs: [v('for_min')] });
    reduce('ReduceMin', v('for_min'), n.min);
    nodes.push({ opType: 'Where', inputs: [q('mask3'), v('xf'), q('ninf')], outputs: [v('for_max')] });
    reduce('ReduceMax', v('for_max'), n.max);
    nodes.push({ opType: 'Greater', inputs: [v('x2d'), NEAR_LO], outputs: [v('above')] });
    nodes.push({ opType: 'Less', inputs: [v('x2d'), NEAR_HI], outputs: [v('below')] });
    nodes.push({ opType: 'And', inputs: [v('above'), v('below')], outputs: [v('inside')] });
    nodes.push({ opType: 'Cast', inputs: [v('inside')], outputs: [v('inside32')], attrs: { to: 1 } });
    // Counts of 0/1 in a float32 GEMV are exact while below 2^24 real tokens per batch.
    nodes.push({ opType: 'MatMul', inputs: [q('row32'), v('inside32')], outputs: [v('nz_row')] });
    nodes.push({ opType: 'Cast', inputs: [v('nz_row')], outputs: [v('nz_row64')], attrs: { to: 11 } });
    squeeze(v('nz_row64'), n.nearZero);
    outputs.push({ name: n.shift }, { name: n.s1 }, { name: n.s2 }, { name: n.min }, { name: n.max }, { name: n.nearZero });
  });
  return { nodes, initializers, inputs, outputs };
}

/**
 * The in-graph moments of a session: which sites they cover (in fragment order), what to feed and
 * fetch on every run, and how to read the outputs back.
 */
/** What the moments need of a captured site. */
export interface MomentSite {
  layer: number;
  tensor: string;
  width: number | null;
}

export class InGraphMoments {
  constructor(readonly sites: MomentSite[], readonly bounds: { lo: number; hi: number }) {}

  /** Feeds for the inputs the fragment added (the near-zero bounds): needed on every run of the session. */
  feeds(): Record<string, ort.Tensor> {
    if (!this.sites.length) return {};
    return {
      [NEAR_LO]: new ort.Tensor('float32', Float32Array.of(this.bounds.lo), []),
      [NEAR_HI]: new ort.Tensor('float32', Float32Array.of(this.bounds.hi), []),
    };
  }

  fetches(): string[] {
    return this.sites.flatMap((_, k) => {
      const n = momentStatsNames(k);
      return [n.shift, n.s1, n.s2, n.min, n.max, n.nearZero];
    });
  }

  /** The outputs of one run as one BatchMoments per site, over `rows` real tokens. */
  read(out: Record<string, ort.Tensor>, rows: number, precision: string): BatchMoments[] {
    return this.sites.map((site, k): BatchMoments => {
      const n = momentStatsNames(k);
      return {
        precision,
        layer: site.layer,
        tensor: site.tensor,
        width: site.width!,
        rows,
        shift: out[n.shift].data as Float64Array,
        s1: out[n.s1].data as Float64Array,
        s2: out[n.s2].data as Float64Array,
        min: out[n.min].data as Float32Array,
        max: out[n.max].data as Float32Array,
        nearZero: out[n.nearZero].data as Float64Array,
      };
    });
  }
}

/** Input names of columnMomentsModel: activations [1, n, width] and an all-ones mask [1, n]. */
export const COLUMN_MOMENTS_X = 'X';
export const COLUMN_MOMENTS_MASK = 'mask';

/** The fragment applied to activations already fetched: one tensor [1, n, width], every row real. */
export function columnMomentsModel(width: number): Uint8Array {
  const g = new GraphBuilder(`column_moments_${width}`);
  g.input(COLUMN_MOMENTS_X, 'float', [1, 'n', width]);
  g.input(COLUMN_MOMENTS_MASK, 'int64', [1, 'n']);
  return appendGraphFragment(g.toModel({ opset: 17 }), momentStatsFragment([{ name: COLUMN_MOMENTS_X, width }], COLUMN_MOMENTS_MASK, 17));
}
