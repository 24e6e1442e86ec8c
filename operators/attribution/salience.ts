/**
 * Salient neurons, the authors' rule (src/2_extract_important_neuron.py in
 * MSingh-CSE/LLM-Quantization-Effects). Per example and layer, from the LIG attributions
 * [positions, width], four aggregations over positions:
 *   (i)   max_position: the row at the position with the largest summed (signed) attribution;
 *   (ii)  sum_abs:      Σ_p |attr[p, n]|;
 *   (iii) mean_abs:     (ii) / positions;
 *   (iv)  max:          max_p attr[p, n], signed (the authors' np.amax over the stacked rows).
 * Each is normalised as |v| / max|v| (normalise 'abs', the authors'; 'signed' keeps v / max|v|,
 * so strongly negative neurons never count); neurons whose normalised value is above the
 * threshold (default 0.7) are salient under that aggregation. Positions are indices, never token
 * strings, so repeated tokens are all counted (the reference implementation keyed by token loses them).
 */
import { QuantlensError } from '../../core/errors.ts';
import type { Estimator } from '../../core/types.ts';
import { decodeF64, encodeF64 } from '../estimators/state-codec.ts';

export const AGGREGATIONS = ['max_position', 'sum_abs', 'mean_abs', 'max'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];
export const DEFAULT_SALIENCE_THRESHOLD = 0.7;
export const NORMALISATIONS = ['abs', 'signed'] as const;
export type Normalisation = (typeof NORMALISATIONS)[number];

export function aggregateAttributions(attr: Float32Array, positions: number, width: number): Record<Aggregation, Float64Array> {
  if (attr.length !== positions * width) throw new RangeError(`attributions have ${attr.length} values, expected ${positions}×${width}`);
  let best = 0;
  let bestSum = -Infinity;
  const sumAbs = new Float64Array(width);
  const max = new Float64Array(width).fill(-Infinity);
  for (let p = 0; p < positions; p++) {
    let rowSum = 0;
    for (let n = 0; n < width; n++) {
      const v = attr[p * width + n];
      rowSum += v;
      sumAbs[n] += Math.abs(v);
      if (v > max[n]) max[n] = v;
    }
    if (rowSum > bestSum) {
      bestSum = rowSum;
      best = p;
    }
  }
  return {
    max_position: Float64Array.from(attr.subarray(best * width, (best + 1) * width)),
    sum_abs: sumAbs,
    mean_abs: sumAbs.map((v) => v / positions),
    max,
  };
}

/** Neurons whose |value| / max|value| ('abs') or value / max|value| ('signed') exceeds the threshold (none when the vector is all zero). */
export function aboveNormalisedThreshold(v: Float64Array, threshold: number, normalise: Normalisation = 'abs'): number[] {
  let m = 0;
  for (const x of v) m = Math.max(m, Math.abs(x));
  if (m === 0) return [];
  const out: number[] = [];
  v.forEach((x, n) => {
    if ((normalise === 'abs' ? Math.abs(x) : x) / m > threshold) out.push(n);
  });
  return out;
}

export interface SalientNeurons {
  byAggregation: Record<Aggregation, number[]>;
  /** Sorted union over the four aggregations. */
  union: number[];
}

export function salientNeurons(
  attr: Float32Array,
  positions: number,
  width: number,
  threshold = DEFAULT_SALIENCE_THRESHOLD,
  normalise: Normalisation = 'abs',
): SalientNeurons {
  const agg = aggregateAttributions(attr, positions, width);
  const byAggregation = {} as Record<Aggregation, number[]>;
  const union = new Set<number>();
  for (const a of AGGREGATIONS) {
    byAggregation[a] = aboveNormalisedThreshold(agg[a], threshold, normalise);
    for (const n of byAggregation[a]) union.add(n);
  }
  return { byAggregation, union: [...union].sort((p, q) => p - q) };
}

/** One example's attributions at one (precision, layer). */
export interface AttributionRecord {
  precision: string;
  layer: number;
  /** The captured activation tensor of that layer. */
  tensor: string;
  exampleId: number;
  attributions: Float32Array;
  positions: number;
  width: number;
  completenessError: number;
  converged: boolean;
}

/** Row of salience.parquet. */
export interface SalienceRow {
  layer: number;
  tensor: string;
  precision: string;
  neuron: number;
  salient_examples: number;
  mean_abs_attr: number;
}

export interface CompletenessSummary {
  count: number;
  min: number;
  median: number;
  p90: number;
  max: number;
  above_threshold: number;
  unconverged_example_ids: number[];
}

export interface SalienceLayerSummary {
  precision: string;
  layer: number;
  tensor: string;
  width: number;
  examples: number;
  /** Neurons salient in at least one example. */
  union_count: number;
  completeness: CompletenessSummary;
}

export interface SalienceResult {
  rows: SalienceRow[];
  layers: SalienceLayerSummary[];
}

interface KeyState {
  precision: string;
  layer: number;
  /** Absent in states written before salience.parquet had the column. */
  tensor?: string;
  width: number;
  examples: number;
  positions: number;
  salient: number[];
  sumAbs: string; // base64 float64
  /** [exampleId, completenessError, converged 0/1] */
  completeness: [number, number, number][];
}

export interface SalienceState {
  threshold: number;
  /** Absent in states written before the choice existed (they used 'signed'). */
  normalise?: Normalisation;
  completenessThreshold: number;
  keys: KeyState[];
}

interface Acc {
  precision: string;
  layer: number;
  tensor: string;
  width: number;
  examples: number;
  positions: number;
  salient: Int32Array;
  sumAbs: Float64Array;
  completeness: [number, number, number][];
}

export class SalienceEstimator implements Estimator<AttributionRecord, SalienceState, SalienceResult> {
  readonly name = 'salience';
  private accs = new Map<string, Acc>();

  constructor(readonly opts: { threshold?: number; completenessThreshold?: number; normalise?: Normalisation } = {}) {}

  private get threshold(): number {
    return this.opts.threshold ?? DEFAULT_SALIENCE_THRESHOLD;
  }

  private get normalise(): Normalisation {
    return this.opts.normalise ?? 'abs';
  }

  private get completenessThreshold(): number {
    return this.opts.completenessThreshold ?? 0.05;
  }

  private acc(precision: string, layer: number, tensor: string, width: number): Acc {
    const key = `${precision}\u0000${layer}\u0000${tensor}`;
    let a = this.accs.get(key);
    if (!a) {
      a = { precision, layer, tensor, width, examples: 0, positions: 0, salient: new Int32Array(width), sumAbs: new Float64Array(width), completeness: [] };
      this.accs.set(key, a);
    }
    if (a.width !== width) throw new QuantlensError('STATE', `salience: layer ${layer} (${precision}) has width ${a.width}, got ${width}`);
    return a;
  }

  update(r: AttributionRecord): void {
    const a = this.acc(r.precision, r.layer, r.tensor, r.width);
    for (const n of salientNeurons(r.attributions, r.positions, r.width, this.threshold, this.normalise).union) a.salient[n]++;
    for (let i = 0; i < r.attributions.length; i++) a.sumAbs[i % r.width] += Math.abs(r.attributions[i]);
    a.examples++;
    a.positions += r.positions;
    a.completeness.push([r.exampleId, r.completenessError, r.converged ? 1 : 0]);
  }

  merge(other: SalienceState): void {
    if (other.threshold !== this.threshold) throw new QuantlensError('STATE', `salience threshold differs between shards (${other.threshold} vs ${this.threshold})`);
    const normalise = other.normalise ?? 'signed';
    if (normalise !== this.normalise) throw new QuantlensError('STATE', `salience normalise differs between shards (${normalise} vs ${this.normalise})`);
    for (const k of other.keys) {
      const a = this.acc(k.precision, k.layer, k.tensor ?? '', k.width);
      const sumAbs = decodeF64(k.sumAbs, k.width, 'salience.sumAbs');
      if (k.salient.length !== k.width) throw new QuantlensError('STATE', `salience.salient has ${k.salient.length} values, expected ${k.width}`);
      for (let n = 0; n < k.width; n++) {
        a.salient[n] += k.salient[n];
        a.sumAbs[n] += sumAbs[n];
      }
      a.examples += k.examples;
      a.positions += k.positions;
      a.completeness.push(...k.completeness);
    }
  }

  state(): SalienceState {
    return {
      threshold: this.threshold,
      normalise: this.normalise,
      completenessThreshold: this.completenessThreshold,
      keys: [...this.accs.values()].map((a) => ({
        precision: a.precision,
        layer: a.layer,
        tensor: a.tensor,
        width: a.width,
        examples: a.examples,
        positions: a.positions,
        salient: Array.from(a.salient),
        sumAbs: encodeF64(a.sumAbs),
        completeness: a.completeness.map((c) => [...c] as [number, number, number]),
      })),
    };
  }

  finish(): SalienceResult {
    const rows: SalienceRow[] = [];
    const layers: SalienceLayerSummary[] = [];
    const accs = [...this.accs.values()].sort((p, q) => p.precision.localeCompare(q.precision) || p.layer - q.layer || p.tensor.localeCompare(q.tensor));
    for (const a of accs) {
      for (let n = 0; n < a.width; n++) {
        rows.push({ layer: a.layer, tensor: a.tensor, precision: a.precision, neuron: n, salient_examples: a.salient[n], mean_abs_attr: a.positions ? a.sumAbs[n] / a.positions : NaN });
      }
      layers.push({
        precision: a.precision,
        layer: a.layer,
        tensor: a.tensor,
        width: a.width,
        examples: a.examples,
        union_count: a.salient.reduce((c, v) => c + (v > 0 ? 1 : 0), 0),
        completeness: summarizeCompleteness(a.completeness, this.completenessThreshold),
      });
    }
    return { rows, layers };
  }
}

/** Distribution of completeness errors; order-independent (so shard merges match a single pass). */
export function summarizeCompleteness(entries: [number, number, number][], threshold: number): CompletenessSummary {
  const errs = entries.map((e) => e[1]).sort((p, q) => p - q);
  const n = errs.length;
  const at = (q: number) => (n ? errs[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] : NaN);
  return {
    count: n,
    min: n ? errs[0] : NaN,
    median: n ? (n % 2 ? errs[(n - 1) / 2] : (errs[n / 2 - 1] + errs[n / 2]) / 2) : NaN,
    p90: at(0.9),
    max: n ? errs[n - 1] : NaN,
    above_threshold: errs.filter((e) => e > threshold).length,
    unconverged_example_ids: entries.filter((e) => e[2] === 0).map((e) => e[0]).sort((p, q) => p - q),
  };
}
