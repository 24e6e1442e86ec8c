/**
 * How far each precision strays from the reference precision on the same examples and tokens.
 *
 * Output level (per precision, from logits at the predicted position): KL(ref‖q) of the full-vocab
 * softmax (mean, median, p90, p99, max), same-top-1 rate, Δp = p_q(ref top) − p_ref(ref top)
 * (mean), and correct→wrong / wrong→correct flips when correct flags are given.
 * Exact KL quantiles need every value, so this estimator keeps one float64 KL per example
 * (8 bytes/example): the one state here that grows with the dataset.
 *
 * Activation level (per precision, layer, tensor): SQNR = 20·log10(‖a‖/‖a−b‖) over all captured
 * values (Σa² and Σ(a−b)² in float64) and the mean cosine between reference and quantized rows
 * (rows where either vector is all zero have no cosine and are counted apart).
 */
import type { ActivationChunk, Estimator, PredictionBatch } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { percentile } from './calibration.ts';
import { compareKeys } from './neurons.ts';
import { GrowableF64, decodeF64, encodeF64 } from './state-codec.ts';
import { argmax, logSumExp } from '../logits.ts';

export interface AgreementRow {
  precision: string;
  reference: string;
  /** null for output-level rows. */
  layer: number | null;
  /** Captured tensor of activation rows; null for output-level rows. */
  tensor: string | null;
  metric: string;
  value: number;
}

export type AgreementInput =
  | { ref: PredictionBatch; q: PredictionBatch; refCorrect?: Uint8Array; qCorrect?: Uint8Array }
  | { ref: ActivationChunk; q: ActivationChunk };

interface OutputAcc {
  kl: GrowableF64;
  sameTop1: number;
  deltaPSum: number;
  flagged: number;
  correctToWrong: number;
  wrongToCorrect: number;
}

interface ActivationAcc {
  layer: number;
  tensor: string;
  values: number;
  sumA2: number;
  sumDiff2: number;
  cosineSum: number;
  cosineRows: number;
  undefinedRows: number;
}

export interface AgreementState {
  reference: string;
  outputs: { precision: string; kl: string; sameTop1: number; deltaPSum: number; flagged: number; correctToWrong: number; wrongToCorrect: number }[];
  activations: ({ precision: string } & ActivationAcc)[];
}

/** Jaccard similarity |a∩b| / |a∪b| of two id sets (1 when both are empty). */
export function jaccard(a: Set<number> | number[], b: Set<number> | number[]): number {
  const sa = a instanceof Set ? a : new Set(a);
  const sb = b instanceof Set ? b : new Set(b);
  if (sa.size === 0 && sb.size === 0) return 1;
  let inter = 0;
  for (const x of sa) if (sb.has(x)) inter++;
  return inter / (sa.size + sb.size - inter);
}

export class AgreementEstimator implements Estimator<AgreementInput, AgreementState, AgreementRow[]> {
  readonly name = 'agreement';
  private readonly outputs = new Map<string, OutputAcc>();
  private readonly activations = new Map<string, { precision: string; acc: ActivationAcc }>();

  constructor(readonly reference: string) {}

  update(input: AgreementInput): void {
    if ('logits' in input.ref) {
      const o = input as Extract<AgreementInput, { ref: PredictionBatch }>;
      this.updateOutputs(o.ref, o.q, o.refCorrect, o.qCorrect);
    } else {
      this.updateActivations(input.ref, input.q as ActivationChunk);
    }
  }

  private checkPair(refPrecision: string, qPrecision: string, what: string): void {
    if (refPrecision !== this.reference) throw new QuantlensError('STATE', `agreement: ${what} reference side is ${refPrecision}, expected ${this.reference}`);
    if (qPrecision === this.reference) throw new QuantlensError('STATE', `agreement: ${what} compares ${qPrecision} with itself`);
  }

  private outputAcc(precision: string): OutputAcc {
    let a = this.outputs.get(precision);
    if (!a) {
      a = { kl: new GrowableF64(), sameTop1: 0, deltaPSum: 0, flagged: 0, correctToWrong: 0, wrongToCorrect: 0 };
      this.outputs.set(precision, a);
    }
    return a;
  }

  updateOutputs(ref: PredictionBatch, q: PredictionBatch, refCorrect?: Uint8Array, qCorrect?: Uint8Array): void {
    const where = `batch ${ref.batchIndex}`;
    this.checkPair(ref.precision, q.precision, where);
    const n = ref.exampleIds.length;
    if (q.vocab !== ref.vocab) throw new QuantlensError('STATE', `agreement: ${where} vocab ${q.precision}=${q.vocab} vs ${ref.precision}=${ref.vocab}`);
    if (q.exampleIds.length !== n || q.exampleIds.some((id, i) => id !== ref.exampleIds[i])) {
      throw new QuantlensError('STATE', `agreement: ${where} example ids of ${q.precision} differ from ${ref.precision}`);
    }
    const withFlags = refCorrect !== undefined && qCorrect !== undefined;
    if (withFlags && (refCorrect.length !== n || qCorrect.length !== n)) throw new QuantlensError('STATE', `agreement: ${where} has ${n} examples but ${refCorrect.length}/${qCorrect.length} correct flags`);
    const V = ref.vocab;
    const acc = this.outputAcc(q.precision);
    for (let e = 0; e < n; e++) {
      const off = e * V;
      const lr = logSumExp(ref.logits, off, V);
      const lq = logSumExp(q.logits, off, V);
      let kl = 0;
      for (let v = 0; v < V; v++) {
        const lpr = ref.logits[off + v] - lr;
        const pr = Math.exp(lpr);
        if (pr === 0) continue; // 0·log(0/q) = 0, also for masked (−∞) logits
        kl += pr * (lpr - (q.logits[off + v] - lq));
      }
      acc.kl.push(Math.max(0, kl)); // rounding can leave −1e-17 for identical rows
      const topR = argmax(ref.logits, off, V);
      const topQ = argmax(q.logits, off, V);
      if (topR === topQ) acc.sameTop1++;
      acc.deltaPSum += Math.exp(q.logits[off + topR] - lq) - Math.exp(ref.logits[off + topR] - lr);
      if (withFlags) {
        acc.flagged++;
        if (refCorrect[e] && !qCorrect[e]) acc.correctToWrong++;
        if (!refCorrect[e] && qCorrect[e]) acc.wrongToCorrect++;
      }
    }
  }

  private activationAcc(precision: string, layer: number, tensor: string): ActivationAcc {
    const k = JSON.stringify([precision, layer, tensor]);
    let e = this.activations.get(k);
    if (!e) {
      e = { precision, acc: { layer, tensor, values: 0, sumA2: 0, sumDiff2: 0, cosineSum: 0, cosineRows: 0, undefinedRows: 0 } };
      this.activations.set(k, e);
    }
    return e.acc;
  }

  updateActivations(ref: ActivationChunk, q: ActivationChunk): void {
    const where = `batch ${ref.batchIndex} layer ${ref.layer} ${ref.tensor}`;
    this.checkPair(ref.precision, q.precision, where);
    if (q.layer !== ref.layer || q.tensor !== ref.tensor || q.width !== ref.width || q.rows !== ref.rows) {
      throw new QuantlensError('STATE', `agreement: ${where}: ${q.precision} chunk is layer ${q.layer} ${q.tensor} [${q.rows}×${q.width}], reference [${ref.rows}×${ref.width}]`);
    }
    for (let r = 0; r < ref.rows; r++) {
      if (q.exampleId[r] !== ref.exampleId[r] || q.position[r] !== ref.position[r]) {
        throw new QuantlensError('STATE', `agreement: ${where}: row ${r} is example ${q.exampleId[r]} pos ${q.position[r]} in ${q.precision} but example ${ref.exampleId[r]} pos ${ref.position[r]} in ${ref.precision}`);
      }
    }
    const acc = this.activationAcc(q.precision, ref.layer, ref.tensor);
    const w = ref.width;
    const a = ref.values, b = q.values;
    for (let r = 0, off = 0; r < ref.rows; r++, off += w) {
      let aa = 0, bb = 0, ab = 0, dd = 0;
      for (let c = off; c < off + w; c++) {
        const x = a[c], y = b[c];
        aa += x * x;
        bb += y * y;
        ab += x * y;
        dd += (x - y) * (x - y);
      }
      acc.sumA2 += aa;
      acc.sumDiff2 += dd;
      if (aa > 0 && bb > 0) {
        acc.cosineSum += ab / Math.sqrt(aa * bb);
        acc.cosineRows++;
      } else acc.undefinedRows++;
    }
    acc.values += ref.rows * w;
  }

  merge(other: AgreementState): void {
    if (other.reference !== this.reference) throw new QuantlensError('STATE', `agreement: cannot merge a state with reference ${other.reference} into reference ${this.reference}`);
    for (const o of other.outputs) {
      const a = this.outputAcc(o.precision);
      a.kl.pushAll(decodeF64(o.kl, undefined, `agreement ${o.precision} kl`));
      a.sameTop1 += o.sameTop1;
      a.deltaPSum += o.deltaPSum;
      a.flagged += o.flagged;
      a.correctToWrong += o.correctToWrong;
      a.wrongToCorrect += o.wrongToCorrect;
    }
    for (const o of other.activations) {
      const a = this.activationAcc(o.precision, o.layer, o.tensor);
      a.values += o.values;
      a.sumA2 += o.sumA2;
      a.sumDiff2 += o.sumDiff2;
      a.cosineSum += o.cosineSum;
      a.cosineRows += o.cosineRows;
      a.undefinedRows += o.undefinedRows;
    }
  }

  state(): AgreementState {
    return {
      reference: this.reference,
      outputs: [...this.outputs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([precision, a]) => ({
        precision, kl: encodeF64(a.kl.view()), sameTop1: a.sameTop1, deltaPSum: a.deltaPSum, flagged: a.flagged, correctToWrong: a.correctToWrong, wrongToCorrect: a.wrongToCorrect,
      })),
      activations: this.sortedActivations().map(({ precision, acc }) => ({ precision, ...acc })),
    };
  }

  private sortedActivations() {
    return [...this.activations.values()].sort((x, y) => compareKeys({ precision: x.precision, ...x.acc }, { precision: y.precision, ...y.acc }));
  }

  finish(): AgreementRow[] {
    const rows: AgreementRow[] = [];
    const ref = this.reference;
    for (const [precision, a] of [...this.outputs.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
      const n = a.kl.length;
      const sorted = Float64Array.from(a.kl.view()).sort();
      let sum = 0;
      for (const v of sorted) sum += v;
      const put = (metric: string, value: number) => rows.push({ precision, reference: ref, layer: null, tensor: null, metric, value });
      put('examples', n);
      put('kl_mean', n ? sum / n : NaN);
      put('kl_median', percentile(sorted, 0.5));
      put('kl_p90', percentile(sorted, 0.9));
      put('kl_p99', percentile(sorted, 0.99));
      put('kl_max', n ? sorted[n - 1] : NaN);
      put('top1_agreement', n ? a.sameTop1 / n : NaN);
      put('delta_p_mean', n ? a.deltaPSum / n : NaN);
      if (a.flagged > 0) {
        put('flips_correct_to_wrong', a.correctToWrong);
        put('flips_wrong_to_correct', a.wrongToCorrect);
      }
    }
    for (const { precision, acc } of this.sortedActivations()) {
      const put = (metric: string, value: number) => rows.push({ precision, reference: ref, layer: acc.layer, tensor: acc.tensor, metric, value });
      put('values', acc.values);
      put('sqnr_db', 10 * Math.log10(acc.sumA2 / acc.sumDiff2)); // = 20·log10(‖a‖/‖a−b‖); +∞ when identical
      put('cosine_mean', acc.cosineRows ? acc.cosineSum / acc.cosineRows : NaN);
      put('cosine_undefined_rows', acc.undefinedRows);
    }
    return rows;
  }
}
