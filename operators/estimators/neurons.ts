/**
 * Per-neuron activation statistics for every (precision, layer, tensor) seen: count, mean,
 * population variance, min, max and the fraction of activations near zero. Memory is
 * O(width) per key; nothing grows with the dataset.
 */
import type { ActivationChunk, BatchMoments, Estimator } from '../../core/types.ts';
import { DEFAULT_NEAR_ZERO, type NearZeroBounds } from './moments.ts';
import type { MomentsRunner } from './moments-graph.ts';
import { MomentsByKey, type NeuronsState } from './moments-by-key.ts';
import { deadNeuronsFrom, type DeadResult } from './dead.ts';

export { compareKeys, keyString, MomentsByKey, type ActivationKey, type NeuronsState } from './moments-by-key.ts';

export interface NeuronRow {
  layer: number;
  tensor: string;
  neuron: number;
  precision: string;
  count: number;
  mean: number;
  variance: number;
  min: number;
  max: number;
  near_zero_fraction: number;
}

/** Input of the neurons estimator: captured activations, or their moments reduced in the graph. */
export type NeuronsInput = ActivationChunk | BatchMoments;

const isChunk = (x: NeuronsInput): x is ActivationChunk => 'values' in x;

export class NeuronsEstimator implements Estimator<NeuronsInput, NeuronsState, NeuronRow[]> {
  readonly name = 'neurons';
  readonly byKey: MomentsByKey;

  /**
   * With a runner, each chunk's batch pass runs in ONNX Runtime (the pipeline's path) and update()
   * resolves when it is merged; without one, update() is a JS pass done before it returns.
   */
  constructor(private readonly opts: { nearZero?: NearZeroBounds; runner?: MomentsRunner } = {}) {
    this.byKey = new MomentsByKey(opts.nearZero ?? DEFAULT_NEAR_ZERO);
  }

  update(input: NeuronsInput): void | Promise<void> {
    if (!isChunk(input)) return this.byKey.updateMoments(input);
    if (this.opts.runner) return this.byKey.updateWith(this.opts.runner, input);
    this.byKey.update(input);
  }

  async release(): Promise<void> {
    await this.opts.runner?.release();
  }

  merge(other: NeuronsState): void {
    this.byKey.merge(other);
  }

  state(): NeuronsState {
    return this.byKey.state();
  }

  /** Dead neurons and near-zero fractions of the same moments (see dead.ts). */
  dead(): DeadResult {
    return deadNeuronsFrom(this.byKey);
  }

  finish(): NeuronRow[] {
    const rows: NeuronRow[] = [];
    for (const { key, moments: m } of this.byKey.entries()) {
      const variance = m.variance();
      const nz = m.nearZeroFraction();
      for (let c = 0; c < m.width; c++) {
        rows.push({
          layer: key.layer,
          tensor: key.tensor,
          neuron: c,
          precision: key.precision,
          count: m.count,
          mean: m.mean[c],
          variance: variance[c],
          min: m.min[c],
          max: m.max[c],
          near_zero_fraction: nz[c],
        });
      }
    }
    return rows;
  }
}
