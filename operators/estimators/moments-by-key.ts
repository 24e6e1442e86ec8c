/**
 * Column moments per (precision, layer, tensor): the state shared by the neurons and dead
 * estimators (dead neurons are read off the same near-zero counts).
 */
import type { ActivationChunk, BatchMoments } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { ColumnMoments, DEFAULT_NEAR_ZERO, type ColumnMomentsState, type NearZeroBounds } from './moments.ts';
import type { MomentsRunner } from './moments-graph.ts';

export interface ActivationKey {
  precision: string;
  layer: number;
  tensor: string;
}

export interface NeuronsState {
  nearZeroLo: number;
  nearZeroHi: number;
  entries: { precision: string; layer: number; tensor: string; moments: ColumnMomentsState }[];
}

/** Stable order for output rows: precision, then layer, then tensor. */
export function compareKeys(a: ActivationKey, b: ActivationKey): number {
  if (a.precision !== b.precision) return a.precision < b.precision ? -1 : 1;
  if (a.layer !== b.layer) return a.layer - b.layer;
  if (a.tensor !== b.tensor) return a.tensor < b.tensor ? -1 : 1;
  return 0;
}

/** A (precision, layer, tensor) key as one Map key. */
export function keyString(k: ActivationKey): string {
  return JSON.stringify([k.precision, k.layer, k.tensor]);
}

/** A map from (precision, layer, tensor) to ColumnMoments; shared by the neurons and dead estimators. */
export class MomentsByKey {
  private readonly map = new Map<string, { key: ActivationKey; moments: ColumnMoments }>();
  constructor(readonly bounds: NearZeroBounds = DEFAULT_NEAR_ZERO) {}

  get(key: ActivationKey, width: number): ColumnMoments {
    const ks = keyString(key);
    let e = this.map.get(ks);
    if (!e) {
      e = { key: { precision: key.precision, layer: key.layer, tensor: key.tensor }, moments: new ColumnMoments(width, this.bounds) };
      this.map.set(ks, e);
    } else if (e.moments.width !== width) {
      throw new QuantlensError('STATE', `activations of ${key.precision} layer ${key.layer} ${key.tensor} changed width from ${e.moments.width} to ${width}`);
    }
    return e.moments;
  }

  update(chunk: ActivationChunk): void {
    if (!Number.isInteger(chunk.layer)) throw new QuantlensError('STATE', `activation chunk layer must be an integer, got ${chunk.layer}`);
    this.get(chunk, chunk.width).update(chunk.values, chunk.rows);
  }

  /** The same update with the batch pass run in ONNX Runtime (see moments-graph.ts). */
  async updateWith(runner: MomentsRunner, chunk: ActivationChunk): Promise<void> {
    if (!Number.isInteger(chunk.layer)) throw new QuantlensError('STATE', `activation chunk layer must be an integer, got ${chunk.layer}`);
    await runner.update(this.get(chunk, chunk.width), chunk.values, chunk.rows);
  }

  /** A batch whose moments were reduced inside the model's graph (onnx/moment-stats.ts). */
  updateMoments(b: BatchMoments): void {
    this.get(b, b.width).mergeShiftedSums(b.rows, b.shift, b.s1, b.s2, b);
  }

  /** Entries in stable key order. */
  entries(): { key: ActivationKey; moments: ColumnMoments }[] {
    return [...this.map.values()].sort((a, b) => compareKeys(a.key, b.key));
  }

  merge(other: NeuronsState): void {
    if (other.nearZeroLo !== this.bounds.lo || other.nearZeroHi !== this.bounds.hi) {
      throw new QuantlensError('STATE', `near-zero bounds differ: state has (${other.nearZeroLo}, ${other.nearZeroHi}), this run (${this.bounds.lo}, ${this.bounds.hi})`);
    }
    for (const e of other.entries) this.get(e, e.moments.width).merge(e.moments);
  }

  state(): NeuronsState {
    return {
      nearZeroLo: this.bounds.lo,
      nearZeroHi: this.bounds.hi,
      entries: this.entries().map(({ key, moments }) => ({ ...key, moments: moments.state() })),
    };
  }
}
