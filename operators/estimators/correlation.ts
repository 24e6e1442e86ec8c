/**
 * Pearson correlation over tokens between every pair of neurons, per (precision, layer, tensor),
 * streamed: each batch's column means and the upper triangle of its centred Gram Xcᵀ·Xc (as
 * blocks) come from a tiny ONNX Runtime graph (correlation-graph.ts), and are folded into a float64 co-moment accumulator with Chan's parallel
 * update  C += G_b + δδᵀ·n_a·n_b/(n_a+n_b),  δ = mean_b − mean_a  (upper triangle only).
 * merge() applies the same update to another shard's accumulator, so shards merge exactly.
 *
 * Memory is d(d+1)/2 float64 per key, fixed by the model width; the budget is checked before any
 * work. When the keys do not fit together, a run folds them in groups over several passes
 * (pipelines/correlation-passes.ts): setActiveKeys() picks the keys a pass accumulates, retire()
 * turns them into results and frees them. States for checkpoints, shards and merge are binary
 * files (saveState(), correlation-state-file.ts); merge() also reads the older inline base64 JSON.
 * finish() gives the paper's |r| histogram (10 bins, |r| = 1 in the last), pairs touching a
 * zero-variance neuron counted apart as undefined, the top-k pairs, and NeuroX-style redundancy
 * clusters (average linkage on 1 − |r|, cut at a threshold).
 *
 * update() is asynchronous (ORT has no synchronous run): await it, or await drain(), before
 * finish(); keep chunk.values unchanged until its update resolves.
 */
import path from 'node:path';
import type { ActivationChunk, Estimator } from '../../core/types.ts';
import { QuantlensError } from '../../core/errors.ts';
import { GramRunner, type GramCompute, type GramResult } from './correlation-graph.ts';
import type { SessionSettings } from '../../onnx/session.ts';
import { compareKeys, keyString, type ActivationKey } from './neurons.ts';
import { decodeF64, encodeF64 } from './state-codec.ts';
import { CoMomentReader, writeCoMomentFile } from './correlation-state-file.ts';
import { linkOrCopy, stateFilePath } from './correlation-state-paths.ts';
import { HISTOGRAM_BINS, clampedR, type CorrelatedPair } from './correlation-pairs.ts';
import { isConstantNeuron, packedIndex, type FinishSettings, type KeyNumbers } from './correlation-finish.ts';
import { finishKeys, type ParallelFinishOptions } from './correlation-finish-parallel.ts';

export { averageLinkageLabels } from './correlation-clusters.ts';
export { HISTOGRAM_BINS, correlationBin, type CorrelatedPair } from './correlation-pairs.ts';
export { CLUSTER_AUTO_LIMIT, packedIndex } from './correlation-finish.ts';

export const DEFAULT_CORRELATION_BUDGET = 4 * 1024 ** 3;
/** Bytes of co-moment state for `keys` accumulators of `width` neurons: the upper triangle, d(d+1)/2 × 8 B per key. */
export function correlationMemoryBytes(width: number, keys: number): number {
  return ((width * (width + 1)) / 2) * 8 * keys;
}

export function checkCorrelationBudget(width: number, keys: number, budgetBytes = DEFAULT_CORRELATION_BUDGET, where?: string): void {
  const need = correlationMemoryBytes(width, keys);
  if (need > budgetBytes) {
    const gib = (b: number) => (b / 1024 ** 3).toFixed(2);
    throw new QuantlensError(
      'BUDGET',
      `correlation needs ${gib(need)} GiB (${keys} layer×precision × ${width}·${width + 1}/2 × 8 B) but the budget is ${gib(budgetBytes)} GiB; capture fewer layers/precisions or raise the correlation memory budget`,
      where,
    );
  }
}

export interface CorrelationOptions {
  /** Default 4 GiB. */
  budgetBytes?: number;
  /** Known up front: checks the budget in the constructor, before any batch is read. */
  plan?: { width: number; keys: number };
  topK?: number;
  /** Merge clusters while the average 1 − |r| distance is ≤ this. Default 0.5 (NeuroX). */
  clusterThreshold?: number;
  /** 'auto' (default) clusters only up to CLUSTER_AUTO_LIMIT neurons. */
  cluster?: boolean | 'auto';
  /** Arithmetic of the ORT Gram graph; default float32, as the pipeline's `correlation.compute` (float64: exact to ~1e-12, ~2x slower). */
  compute?: GramCompute;
  runner?: GramRunner;
  /** ORT settings (threads, execution providers) of the Gram graph when no runner is given. */
  settings?: SessionSettings;
  /** The finish's keys on this thread and a worker (correlation-finish-parallel.ts); default 'auto'. */
  finishThreads?: ParallelFinishOptions['threads'];
  /** Tests: let the finish worker claim a key first (see ParallelFinishOptions). */
  finishAwaitWorkerMs?: number;
}

export interface CorrelationRow {
  layer: number;
  tensor: string;
  precision: string;
  /** null on the row counting undefined pairs (a zero-variance neuron). */
  bin_lo: number | null;
  bin_hi: number | null;
  pairs: number;
}

export interface CorrelationSummary {
  layer: number;
  tensor: string;
  precision: string;
  tokens: number;
  neurons: number;
  constant_neurons: number;
  undefined_pairs: number;
  top_pairs: CorrelatedPair[];
  /** null when clustering was skipped. Constant neurons are left out of clustering. */
  clusters: number | null;
  independent_neurons: number | null;
  cluster_threshold: number;
}

export interface CorrelationResult {
  rows: CorrelationRow[];
  summaries: CorrelationSummary[];
}

export interface CoMomentState {
  precision: string;
  layer: number;
  tensor: string;
  width: number;
  n: number;
  /** base64 float64: mean [d], packed upper triangle of C [d(d+1)/2] row by row, min [d], max [d]. */
  mean: string;
  upper: string;
  min: string;
  max: string;
}

/** One key's co-moments in a binary state file (correlation-state-file.ts). */
export interface CoMomentFileEntry {
  precision: string;
  layer: number;
  tensor: string;
  width: number;
  n: number;
  /** The file's name, in the folder of the JSON that lists it. */
  file: string;
  /** Byte offset of the entry in the file. */
  offset: number;
}

/** A key an earlier pass already turned into results (multi-pass runs). */
export interface FinishedKey {
  key: ActivationKey;
  rows: CorrelationRow[];
  summary: CorrelationSummary;
}

export interface CorrelationState {
  /** Entries in binary files (saveState), or inline base64 (state(), and states written before binary files). */
  entries: (CoMomentState | CoMomentFileEntry)[];
  /** Keys retired by earlier passes: their results (their co-moments too, as file entries, in a shard). */
  finished?: FinishedKey[];
}

/** What state() returns: every entry inline. */
export interface InlineCorrelationState extends CorrelationState {
  entries: CoMomentState[];
}

const isFileEntry = (e: CoMomentState | CoMomentFileEntry): e is CoMomentFileEntry => typeof (e as CoMomentFileEntry)?.file === 'string';

/** The key fields of a state entry, checked before anything is allocated for it. */
function checkEntryKey(e: unknown): asserts e is { precision: string; layer: number; tensor: string; width: number; n: number } {
  const o = e as Record<string, unknown>;
  const bad = (f: string) => {
    throw new QuantlensError('STATE', `correlation entry field ${f} is ${JSON.stringify(o?.[f])}`);
  };
  if (!o || typeof o !== 'object') throw new QuantlensError('STATE', 'correlation entry is not an object');
  if (typeof o.precision !== 'string') bad('precision');
  if (typeof o.tensor !== 'string') bad('tensor');
  if (!Number.isSafeInteger(o.layer)) bad('layer');
  if (!Number.isSafeInteger(o.width) || (o.width as number) < 1) bad('width');
  if (!Number.isSafeInteger(o.n) || (o.n as number) < 0) bad('n');
}

/** float64 co-moments of one key: count, means, C = Σ (x−mean)(x−mean)ᵀ (upper), column min/max. */
export class CoMoments {
  n = 0;
  readonly mean: Float64Array;
  readonly upper: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;

  constructor(readonly width: number) {
    this.mean = new Float64Array(width);
    // Shared, so the finish's worker reads it without a copy (correlation-finish-parallel.ts).
    this.upper = new Float64Array(new SharedArrayBuffer(8 * ((width * (width + 1)) / 2)));
    this.min = new Float64Array(width).fill(Infinity);
    this.max = new Float64Array(width).fill(-Infinity);
  }

  /**
   * Chan update with a part of nb rows and means meanB: C += C_b + δδᵀ·n_a·n_b/n, δ = meanB − mean.
   * `addCoMoment(upper, f, delta)` adds C_b + f·δδᵀ into the packed upper triangle.
   */
  private chan(nb: number, meanB: ArrayLike<number>, addCoMoment: (upper: Float64Array, f: number, delta: Float64Array) => void): void {
    if (nb === 0) return;
    const d = this.width;
    const na = this.n;
    const n = na + nb;
    const f = na === 0 ? 0 : (na * nb) / n;
    const { mean } = this;
    const delta = new Float64Array(d);
    for (let i = 0; i < d; i++) delta[i] = meanB[i] - mean[i];
    addCoMoment(this.upper, f, delta);
    const g = nb / n;
    for (let i = 0; i < d; i++) mean[i] = na === 0 ? meanB[i] : mean[i] + delta[i] * g;
    this.n = n;
  }

  /** Another part whose packed upper triangle arrives in consecutive slices (a binary state file, streamed). */
  addPackedSlices(nb: number, meanB: ArrayLike<number>, slices: (each: (slice: Float64Array) => void) => void): void {
    const d = this.width;
    this.chan(nb, meanB, (upper, f, delta) => {
      let i = 0, j = 0, k = 0, di = delta[0] * f;
      slices((slice) => {
        for (let t = 0; t < slice.length; t++, k++) {
          upper[k] += slice[t] + di * delta[j];
          if (++j === d) di = delta[++i] * f, (j = i);
        }
      });
      if (k !== upper.length) throw new QuantlensError('STATE', `correlation state gave ${k} co-moments, expected ${upper.length}`);
    });
  }

  /** A batch given as Gram blocks on and above the diagonal (correlation-graph.ts). */
  addBlocks(g: GramResult): void {
    const d = this.width;
    const first = this.n === 0;
    this.chan(g.n, g.mean, (upper, f, delta) => {
      for (const b of g.blocks) {
        for (let r = 0; r < b.rowSize; r++) {
          const i = b.row + r;
          const di = delta[i] * f;
          // Row i of the packed triangle starts at packedIndex(d, i, i); element j sits j − i later.
          const base = packedIndex(d, i, i) - i;
          const src = r * b.colSize - b.col;
          const end = b.col + b.colSize;
          // The first part of an empty accumulator: C = C_b exactly (f = 0), without reading C back.
          if (first) for (let j = Math.max(b.col, i); j < end; j++) upper[base + j] = b.data[src + j];
          else for (let j = Math.max(b.col, i); j < end; j++) upper[base + j] += b.data[src + j] + di * delta[j];
        }
      }
    });
  }

  /** Column minima and maxima of another part (a state's, or a batch's from the Gram graph). */
  mergeRange(min: ArrayLike<number>, max: ArrayLike<number>): void {
    for (let c = 0; c < this.width; c++) {
      if (min[c] < this.min[c]) this.min[c] = min[c];
      if (max[c] > this.max[c]) this.max[c] = max[c];
    }
  }

  /** A neuron with one value on every token has no correlation with anything. */
  isConstant(c: number): boolean {
    return isConstantNeuron(this, c);
  }
}

/** One state file entry folded into an accumulator, its upper triangle streamed in slices. */
function foldFromFile(m: CoMoments, r: CoMomentReader, n: number, offset: number): void {
  const v = r.vectors(offset, m.width);
  m.mergeRange(v.min, v.max);
  m.addPackedSlices(n, v.mean, (each) => r.upperSlices(offset, m.width, each));
}

/** A merged key's accumulator from every shard's part, in shard order (exactly what merge() would have built). */
function foldDeferred(d: { width: number; parts: { n: number; path: string; offset: number }[] }): CoMoments {
  const m = new CoMoments(d.width);
  for (const p of d.parts) {
    const r = new CoMomentReader(p.path);
    try {
      foldFromFile(m, r, p.n, p.offset);
    } finally {
      r.close();
    }
  }
  return m;
}

export class CorrelationEstimator implements Estimator<ActivationChunk, CorrelationState, CorrelationResult> {
  readonly name = 'correlation';
  private readonly acc = new Map<string, { key: ActivationKey; m: CoMoments }>();
  private readonly budget: number;
  private readonly topK: number;
  private readonly threshold: number;
  private readonly clusterMode: boolean | 'auto';
  private readonly finishOptions: ParallelFinishOptions;
  /** Keys the last finish() or retire() left to the worker thread (tests, benches). */
  finishWorkerKeys = 0;
  private readonly compute: GramCompute;
  private readonly runner: GramRunner;
  private readonly ownsRunner: boolean;
  private queue: Promise<void> = Promise.resolve();
  private pending = 0;
  private failure: unknown = undefined;
  /** The keys this pass accumulates (null: all); chunks of other keys are ignored. */
  private active: Set<string> | null = null;
  /** Results of keys retired by earlier passes. */
  private readonly finished = new Map<string, FinishedKey>();
  /** Co-moments of retired keys kept in binary files (a shard's, for merge); `path` is absolute. */
  private readonly spilled = new Map<string, CoMomentFileEntry & { path: string }>();
  /** merge() records file entries here instead of loading them; finish() folds them key by key. */
  private deferred: Map<string, { key: ActivationKey; width: number; parts: { n: number; path: string; offset: number }[] }> | null = null;

  constructor(opts: CorrelationOptions = {}) {
    this.budget = opts.budgetBytes ?? DEFAULT_CORRELATION_BUDGET;
    if (opts.plan) checkCorrelationBudget(opts.plan.width, opts.plan.keys, this.budget, 'correlation');
    this.topK = opts.topK ?? 20;
    this.threshold = opts.clusterThreshold ?? 0.5;
    this.clusterMode = opts.cluster ?? 'auto';
    this.finishOptions = { threads: opts.finishThreads, awaitWorkerMs: opts.finishAwaitWorkerMs };
    this.compute = opts.compute ?? 'float32';
    this.ownsRunner = !opts.runner;
    this.runner = opts.runner ?? new GramRunner(opts.settings);
  }

  /** The accumulator for a key; a new key is admitted only if all keys together fit the budget. */
  private accumulator(key: ActivationKey, width: number): CoMoments {
    const ks = keyString(key);
    const e = this.acc.get(ks);
    if (e) {
      if (e.m.width !== width) throw new QuantlensError('STATE', `correlation: ${key.precision} layer ${key.layer} ${key.tensor} changed width from ${e.m.width} to ${width}`);
      return e.m;
    }
    let used = 0;
    for (const { m } of this.acc.values()) used += correlationMemoryBytes(m.width, 1);
    const need = used + correlationMemoryBytes(width, 1);
    if (need > this.budget) {
      throw new QuantlensError(
        'BUDGET',
        `correlation of ${key.precision} layer ${key.layer} ${key.tensor} (width ${width}) would bring co-moment memory to ${need} B, over the ${this.budget} B budget; capture fewer layers/precisions or raise the correlation memory budget`,
      );
    }
    const m = new CoMoments(width);
    this.acc.set(ks, { key: { precision: key.precision, layer: key.layer, tensor: key.tensor }, m });
    return m;
  }

  /** The keys the coming updates accumulate (a pass of a multi-pass run); null accumulates every key. */
  setActiveKeys(keys: ActivationKey[] | null): void {
    this.active = keys ? new Set(keys.map(keyString)) : null;
  }

  /**
   * For `quantlens merge`: merge() only records where each shard's co-moments are; finish() then
   * folds them one key at a time, so merging needs the memory of one key, whatever the key count.
   */
  deferMerges(): void {
    this.deferred ??= new Map();
  }

  update(chunk: ActivationChunk): Promise<void> {
    if (this.active && !this.active.has(keyString(chunk))) return Promise.resolve();
    const acc = this.accumulator(chunk, chunk.width);
    if (chunk.rows === 0) return this.queue;
    if (chunk.values.length < chunk.rows * chunk.width) throw new QuantlensError('STATE', `correlation: chunk of ${chunk.rows}×${chunk.width} has only ${chunk.values.length} values`);
    this.pending++;
    // Batches are folded in arrival order so a run is reproducible to the last bit.
    const job = this.queue.then(async () => {
      const g = await this.runner.run(chunk.values, chunk.rows, chunk.width, this.compute);
      acc.mergeRange(g.min, g.max);
      acc.addBlocks(g);
    });
    this.queue = job.then(
      () => void this.pending--,
      (e) => {
        this.pending--;
        this.failure ??= e;
      },
    );
    return job;
  }

  /** Pearson r of neurons i and j of an accumulated key (null: a constant neuron, or a key not accumulated). */
  pairCorrelation(key: ActivationKey, i: number, j: number): number | null {
    this.assertSettled('pairCorrelation');
    const m = this.acc.get(keyString(key))?.m;
    if (!m || m.isConstant(i) || m.isConstant(j)) return null;
    const d = m.width;
    const c = (a: number, b: number) => m.upper[packedIndex(d, Math.min(a, b), Math.max(a, b))];
    return clampedR(c(i, j), Math.sqrt(c(i, i)), Math.sqrt(c(j, j)));
  }

  /** Resolves when every update so far has been folded in. */
  async drain(): Promise<void> {
    await this.queue;
    if (this.failure) throw this.failure;
  }

  /**
   * Folds another state in (a checkpoint's, or a shard's). `dir` is the folder of the JSON that
   * lists it, where its binary files are. Keys it lists as finished keep their results.
   */
  merge(other: CorrelationState, dir = '.'): void {
    const finished = new Set<string>();
    if (!this.deferred)
      for (const f of other.finished ?? []) {
        checkEntryKey({ ...f?.key, width: f?.summary?.neurons, n: f?.summary?.tokens });
        if (!Array.isArray(f.rows)) throw new QuantlensError('STATE', 'correlation finished entry has no rows');
        this.finished.set(keyString(f.key), f);
        finished.add(keyString(f.key));
      }
    if (!Array.isArray(other?.entries)) throw new QuantlensError('STATE', 'correlation state has no entries list');
    for (const e of other.entries) {
      checkEntryKey(e);
      if (isFileEntry(e)) this.mergeFileEntry(e, dir, finished.has(keyString(e)));
      else this.mergeInline(e);
    }
  }

  private mergeInline(e: CoMomentState): void {
    const m = this.accumulator(e, e.width);
    const tri = (e.width * (e.width + 1)) / 2;
    m.mergeRange(decodeF64(e.min, e.width, 'min'), decodeF64(e.max, e.width, 'max'));
    // An inline (base64) state is one slice of the packed upper triangle.
    const upper = decodeF64(e.upper, tri, 'upper');
    m.addPackedSlices(e.n, decodeF64(e.mean, e.width, 'mean'), (each) => each(upper));
  }

  private mergeFileEntry(e: CoMomentFileEntry, dir: string, retired: boolean): void {
    const file = stateFilePath(dir, e.file);
    const key = { precision: e.precision, layer: e.layer, tensor: e.tensor };
    const r = new CoMomentReader(file);
    try {
      r.checkEntry(e.offset, e.width, `correlation ${e.precision} layer ${e.layer} ${e.tensor}`);
      if (retired) return void this.spilled.set(keyString(key), { ...key, width: e.width, n: e.n, file: e.file, offset: e.offset, path: file });
      if (this.deferred) {
        const ks = keyString(key);
        const d = this.deferred.get(ks) ?? { key, width: e.width, parts: [] };
        if (d.width !== e.width) throw new QuantlensError('STATE', `correlation: ${e.precision} layer ${e.layer} ${e.tensor} has width ${e.width} here, ${d.width} in another state`, file);
        d.parts.push({ n: e.n, path: file, offset: e.offset });
        return void this.deferred.set(ks, d);
      }
      foldFromFile(this.accumulator(key, e.width), r, e.n, e.offset);
    } finally {
      r.close();
    }
  }

  /**
   * Ends a pass: its keys become results (and, with `spillTo`, their co-moments a binary file,
   * which a shard's state lists for merge), and their memory is released for the next pass.
   */
  async retire(spillTo?: string): Promise<void> {
    await this.drain();
    const list = this.sortedAccumulators();
    if (spillTo && list.length) {
      const offsets = await writeCoMomentFile(spillTo, list.map((e) => e.m));
      list.forEach(({ key, m }, k) => this.spilled.set(keyString(key), { ...key, width: m.width, n: m.n, file: path.basename(spillTo), offset: offsets[k], path: spillTo }));
    }
    const results = this.finishAccumulated(list);
    list.forEach(({ key }, k) => this.finished.set(keyString(key), { key, ...results[k] }));
    this.acc.clear();
  }

  /**
   * The state as JSON plus binary files in `dir`: the accumulated keys written to `dir/name`,
   * retired keys' files linked into `dir` when they are elsewhere. The checkpoint and a shard's
   * state.json hold what this returns.
   */
  async saveState(dir: string, name: string): Promise<CorrelationState> {
    this.assertSettled('saveState');
    const list = this.sortedAccumulators();
    const entries: CoMomentFileEntry[] = [];
    if (list.length) {
      const offsets = await writeCoMomentFile(path.join(dir, name), list.map((e) => e.m));
      list.forEach(({ key, m }, k) => entries.push({ ...key, width: m.width, n: m.n, file: name, offset: offsets[k] }));
    }
    const moved = new Map<string, string>();
    for (const s of this.spilled.values()) {
      const target = path.join(dir, path.basename(s.path));
      if (path.resolve(s.path) !== path.resolve(target) && !moved.has(s.path)) moved.set(s.path, await linkOrCopy(s.path, target));
      s.path = moved.get(s.path) ?? s.path;
      const { path: _p, ...entry } = s;
      entries.push({ ...entry, file: path.basename(s.path) });
    }
    entries.sort(compareKeys);
    return { entries, finished: [...this.finished.values()].sort((a, b) => compareKeys(a.key, b.key)) };
  }

  private sortedAccumulators(): { key: ActivationKey; m: CoMoments }[] {
    return [...this.acc.values()].sort((a, b) => compareKeys(a.key, b.key));
  }

  private assertSettled(what: string): void {
    if (this.pending > 0) throw new QuantlensError('STATE', `correlation: ${what}() called with ${this.pending} update(s) still running; await update() or drain() first`);
    if (this.failure) throw this.failure;
  }

  /** The state as one JSON value (inline base64: small widths, tests and library use; runs use saveState()). */
  state(): InlineCorrelationState {
    this.assertSettled('state');
    if (this.spilled.size) throw new QuantlensError('STATE', 'not supported: correlation state() after a pass wrote its keys to files; use saveState()');
    const inline: CoMomentState[] = this.sortedAccumulators().map(({ key, m }) => ({
      ...key,
      width: m.width,
      n: m.n,
      mean: encodeF64(m.mean),
      upper: encodeF64(m.upper),
      min: encodeF64(m.min),
      max: encodeF64(m.max),
    }));
    const state: InlineCorrelationState = { entries: inline };
    if (this.finished.size) state.finished = [...this.finished.values()].sort((a, b) => compareKeys(a.key, b.key));
    return state;
  }

  /** Results of every key: retired ones, accumulated ones, and (merge) deferred ones folded one at a time. */
  finish(): CorrelationResult {
    this.assertSettled('finish');
    const keys: { key: ActivationKey; result: () => { rows: CorrelationRow[]; summary: CorrelationSummary } }[] = [];
    for (const f of this.finished.values()) keys.push({ key: f.key, result: () => f });
    const list = this.sortedAccumulators();
    const results = this.finishAccumulated(list);
    list.forEach(({ key }, k) => keys.push({ key, result: () => results[k] }));
    // Merged keys are folded one at a time, so that merging holds one key's co-moments at once.
    for (const d of this.deferred?.values() ?? []) keys.push({ key: d.key, result: () => this.finishAccumulated([{ key: d.key, m: foldDeferred(d) }])[0] });
    const rows: CorrelationRow[] = [];
    const summaries: CorrelationSummary[] = [];
    for (const { result } of keys.sort((a, b) => compareKeys(a.key, b.key))) {
      const { rows: r, summary } = result();
      rows.push(...r);
      summaries.push(summary);
    }
    return { rows, summaries };
  }

  private finishSettings(): FinishSettings {
    return { topK: this.topK, threshold: this.threshold, cluster: this.clusterMode };
  }

  /** Results of accumulated keys, in the order given; their pair passes split with a worker when it pays. */
  private finishAccumulated(list: { key: ActivationKey; m: CoMoments }[]): { rows: CorrelationRow[]; summary: CorrelationSummary }[] {
    const { numbers, workerKeys } = finishKeys(list.map((e) => e.m), this.finishSettings(), this.finishOptions);
    this.finishWorkerKeys = workerKeys;
    return list.map(({ key, m }, k) => this.resultOf(key, m, numbers[k]));
  }

  /** One key's rows and summary from its numbers (correlation-finish.ts). */
  private resultOf(key: ActivationKey, m: CoMoments, x: KeyNumbers): { rows: CorrelationRow[]; summary: CorrelationSummary } {
    const d = m.width;
    const base = { layer: key.layer, tensor: key.tensor, precision: key.precision };
    const rows: CorrelationRow[] = [{ ...base, bin_lo: null, bin_hi: null, pairs: x.undefinedPairs }];
    for (let b = 0; b < HISTOGRAM_BINS; b++) rows.push({ ...base, bin_lo: b / HISTOGRAM_BINS, bin_hi: (b + 1) / HISTOGRAM_BINS, pairs: x.hist[b] });
    return {
      rows,
      summary: {
        ...base,
        tokens: m.n,
        neurons: d,
        constant_neurons: x.constantNeurons,
        undefined_pairs: x.undefinedPairs,
        top_pairs: x.top,
        clusters: x.clusters,
        independent_neurons: x.independent,
        cluster_threshold: this.threshold,
      },
    };
  }

  /** Releases the ORT sessions this estimator created. */
  async release(): Promise<void> {
    if (this.ownsRunner) await this.runner.release();
  }
}
