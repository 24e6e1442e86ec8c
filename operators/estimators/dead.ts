/**
 * Dead neurons, the paper's rule: a neuron is dead at a (precision, layer) when every activation
 * on every non-pad token lies strictly inside (lo, hi), default (-0.1, 0.1). That is exactly
 * "near-zero count == count", so this reuses ColumnMoments. The pipeline runs one NeuronsEstimator
 * and reads dead neurons off it (NeuronsEstimator.dead()), so activations are reduced once;
 * DeadNeuronsEstimator is the same computation standing alone, for library users who want only it.
 */
import type { ActivationChunk, Estimator } from '../../core/types.ts';
import { DEFAULT_NEAR_ZERO, type NearZeroBounds } from './moments.ts';
import { MomentsByKey, type NeuronsState } from './moments-by-key.ts';

export interface DeadRow {
  layer: number;
  /** Captured tensor name; one row per (precision, layer, tensor). */
  tensor: string;
  precision: string;
  dead_count: number;
  total: number;
  dead_ids: number[];
}

export interface NearZeroRow {
  layer: number;
  tensor: string;
  precision: string;
  neuron: number;
  near_zero_fraction: number;
}

export interface DeadResult {
  rows: DeadRow[];
  nearZero: NearZeroRow[];
}

/** Dead-neuron rows and per-neuron near-zero fractions from accumulated moments. */
export function deadNeuronsFrom(byKey: MomentsByKey): DeadResult {
  const rows: DeadRow[] = [];
  const nearZero: NearZeroRow[] = [];
  for (const { key, moments: m } of byKey.entries()) {
    const deadIds: number[] = [];
    for (let c = 0; c < m.width; c++) {
      if (m.count > 0 && m.nearZero[c] === m.count) deadIds.push(c);
      nearZero.push({ layer: key.layer, tensor: key.tensor, precision: key.precision, neuron: c, near_zero_fraction: m.count > 0 ? m.nearZero[c] / m.count : NaN });
    }
    rows.push({ layer: key.layer, tensor: key.tensor, precision: key.precision, dead_count: deadIds.length, total: m.width, dead_ids: deadIds });
  }
  return { rows, nearZero };
}

export class DeadNeuronsEstimator implements Estimator<ActivationChunk, NeuronsState, DeadResult> {
  readonly name = 'dead';
  readonly byKey: MomentsByKey;

  constructor(opts: { bounds?: NearZeroBounds } = {}) {
    this.byKey = new MomentsByKey(opts.bounds ?? DEFAULT_NEAR_ZERO);
  }

  update(chunk: ActivationChunk): void {
    this.byKey.update(chunk);
  }

  merge(other: NeuronsState): void {
    this.byKey.merge(other);
  }

  state(): NeuronsState {
    return this.byKey.state();
  }

  finish(): DeadResult {
    return deadNeuronsFrom(this.byKey);
  }
}
