/**
 * `measure: perplexity`: next-token agreement over every position of a text, as llama.cpp's
 * `llama-perplexity --kl-divergence` reports it. Each sequence (a rendered prompt) is scored on
 * every next-token position inside the context (or only its second half, as llama.cpp scores
 * each window): NLL of the actual next token for every precision, and for every precision
 * against the reference KL(ref‖q) over the full vocabulary, Δp = p_q − p_ref of the actual
 * token and whether the top tokens agree. All in float64 from the float32 logits.
 *
 * Memory: the logits [rows, seqLen, vocab] of one batch are read and dropped; what stays is
 * running sums (perplexity-stats.ts) plus, for exact percentiles, 8 bytes per scored position
 * and quantized precision for KLD and for Δp, spilled to a temporary file (value-spill.ts) and
 * read back one at a time at the end.
 */
import { QuantlensError } from '../../core/errors.ts';
import { ValueSpill, spillFolder } from './value-spill.ts';
import { emptyPairSums, pairFigures, pplFigures, type PairSums } from './perplexity-stats.ts';

export type PositionScope = 'all' | 'second-half';

/** One precision's full logits for a left-padded batch: row-major [rows, seqLen, vocab]. */
export interface SequenceLogits {
  precision: string;
  logits: Float32Array;
}

export interface PerplexityBatch {
  seqLen: number;
  vocab: number;
  /** Real tokens per row; row b's tokens sit at columns seqLen − lengths[b] … seqLen − 1. */
  lengths: Int32Array;
  /** Each row's real token ids (BOS included). */
  ids: Int32Array[];
  outputs: SequenceLogits[];
}

export interface PerplexityRow {
  precision: string;
  reference: string;
  metric: string;
  value: number;
  uncertainty: number | null;
  positions: number;
}

export interface PerplexitySummary {
  reference: string;
  positions: PositionScope;
  precisions: Record<string, Record<string, number>>;
}

/** Target token indices [start, end) scored in a sequence of `len` tokens. */
export function scoredTargets(len: number, scope: PositionScope): [number, number] {
  return [scope === 'all' ? 1 : Math.floor(len / 2) + 1, len];
}

/** log Σ exp over one vocab row, and the first index of its maximum. */
function logSumExp(l: Float32Array, off: number, V: number): { lse: number; argmax: number } {
  let m = -Infinity;
  let argmax = 0;
  for (let v = 0; v < V; v++) if (l[off + v] > m) (m = l[off + v]), (argmax = v);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(l[off + v] - m);
  return { lse: m + Math.log(z), argmax };
}

export class PerplexityEstimator {
  private readonly refSums = { count: 0, nll: 0, nll2: 0 };
  private readonly pairs = new Map<string, { sums: PairSums; kld: ValueSpill; deltaP: ValueSpill }>();
  private readonly folder: { dir: string; remove: () => void };

  constructor(
    private readonly reference: string,
    precisions: string[],
    private readonly scope: PositionScope = 'all',
  ) {
    this.folder = spillFolder('ql-perplexity-');
    for (const p of precisions)
      if (p !== reference) this.pairs.set(p, { sums: emptyPairSums(), kld: new ValueSpill(this.folder.dir, `${p}-kld`), deltaP: new ValueSpill(this.folder.dir, `${p}-dp`) });
  }

  /** Logits offsets and target ids of every scored position of the batch. */
  private positions(b: PerplexityBatch): { offsets: Float64Array; targets: Int32Array } {
    const offs: number[] = [];
    const tgts: number[] = [];
    b.ids.forEach((ids, r) => {
      const len = b.lengths[r];
      if (ids.length !== len) throw new QuantlensError('STATE', `perplexity: row ${r} has ${ids.length} ids for length ${len}`);
      const [start, end] = scoredTargets(len, this.scope);
      // Token j sits at column seqLen − len + j; its distribution comes from the column before.
      for (let j = start; j < end; j++) {
        offs.push((r * b.seqLen + (b.seqLen - len + j - 1)) * b.vocab);
        tgts.push(ids[j]);
      }
    });
    return { offsets: Float64Array.from(offs), targets: Int32Array.from(tgts) };
  }

  update(b: PerplexityBatch): void {
    const ref = b.outputs.find((o) => o.precision === this.reference);
    if (!ref) throw new QuantlensError('STATE', `perplexity: no logits for the reference ${this.reference}`);
    const V = b.vocab;
    const { offsets, targets } = this.positions(b);
    const n = targets.length;
    const refLse = new Float64Array(n);
    const refTop = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const { lse, argmax } = logSumExp(ref.logits, offsets[i], V);
      refLse[i] = lse;
      refTop[i] = argmax;
      const nll = lse - ref.logits[offsets[i] + targets[i]];
      this.refSums.count++;
      this.refSums.nll += nll;
      this.refSums.nll2 += nll * nll;
    }
    for (const o of b.outputs) {
      const pair = this.pairs.get(o.precision);
      if (pair) this.updatePair(pair, ref.logits, o.logits, offsets, targets, refLse, refTop, V);
    }
  }

  private updatePair(
    pair: { sums: PairSums; kld: ValueSpill; deltaP: ValueSpill },
    r: Float32Array,
    q: Float32Array,
    offsets: Float64Array,
    targets: Int32Array,
    refLse: Float64Array,
    refTop: Int32Array,
    V: number,
  ): void {
    const n = targets.length;
    const klds = new Float64Array(n);
    const dps = new Float64Array(n);
    const s = pair.sums;
    for (let i = 0; i < n; i++) {
      const off = offsets[i];
      const { lse, argmax } = logSumExp(q, off, V);
      let kl = 0;
      for (let v = 0; v < V; v++) {
        const lr = r[off + v] - refLse[i];
        kl += Math.exp(lr) * (lr - (q[off + v] - lse));
      }
      const nll = lse - q[off + targets[i]];
      const nllBase = refLse[i] - r[off + targets[i]];
      const dp = Math.exp(-nll) - Math.exp(-nllBase);
      klds[i] = kl;
      dps[i] = dp;
      s.count++;
      s.nll += nll;
      s.nll2 += nll * nll;
      s.nllBase += nllBase;
      s.nllBase2 += nllBase * nllBase;
      s.nllNllBase += nll * nllBase;
      s.kld += kl;
      s.kld2 += kl * kl;
      s.pDiff += dp;
      s.pDiff2 += dp * dp;
      s.pDiff4 += dp * dp * dp * dp;
      if (argmax === refTop[i]) s.sameTop++;
    }
    pair.kld.append(klds);
    pair.deltaP.append(dps);
  }

  /** The summary figures per precision and the same as long rows (perplexity.parquet). */
  finish(): { summary: PerplexitySummary; rows: PerplexityRow[] } {
    const precisions: Record<string, Record<string, number>> = { [this.reference]: pplFigures(this.refSums.count, this.refSums.nll, this.refSums.nll2) };
    for (const [p, pair] of this.pairs) {
      // One spill in memory at a time: O(positions), never × vocab.
      const kld = pair.kld.readAll().sort();
      const dp = pair.deltaP.readAll().sort();
      precisions[p] = pairFigures(pair.sums, kld, dp);
    }
    this.dispose();
    const rows: PerplexityRow[] = [];
    for (const [p, figs] of Object.entries(precisions))
      for (const [metric, value] of Object.entries(figs)) {
        if (metric === 'positions' || metric.endsWith('_unc')) continue;
        rows.push({ precision: p, reference: this.reference, metric, value, uncertainty: figs[`${metric}_unc`] ?? null, positions: figs.positions });
      }
    return { summary: { reference: this.reference, positions: this.scope, precisions }, rows };
  }

  /** Close and delete the spill files (also on abort). */
  dispose(): void {
    for (const pair of this.pairs.values()) {
      pair.kld.close();
      pair.deltaP.close();
    }
    this.folder.remove();
  }
}
