/**
 * The correlation part of the memory budget, and the passes it implies. Each (layer, precision)
 * key holds its co-moments, d(d+1)/2 float64 (the upper triangle), for the whole dataset; one
 * batch's Gram (the blocks on and above the diagonal, plus the centred batch) is held while it is
 * folded in. When all keys do not fit in what the budget leaves for correlation, they are split
 * into groups that do, in key order (precision by precision, layer by layer, so a pass runs as
 * few precisions as it can), and every group after the first is one more pass over the dataset
 * (pipelines/correlation-passes.ts). A key that cannot fit even alone is refused before any work.
 */
import { CLUSTER_AUTO_LIMIT, correlationMemoryBytes } from '../operators/estimators/correlation.ts';
import { PARALLEL_MIN_WIDTH } from '../operators/estimators/correlation-finish-parallel.ts';
import { DEFAULT_GRAM_BLOCK, gramBlocks, type GramCompute } from '../operators/estimators/correlation-graph.ts';

const GiB = 1024 ** 3;
const gib = (b: number) => (b / GiB).toFixed(2);
/** GiB for run-sized figures, MiB or KiB for the small ones a tiny budget or model gives. */
const size = (b: number) => (Math.abs(b) >= 0.1 * GiB ? `${gib(b)} GiB` : Math.abs(b) >= 1024 ** 2 ? `${(b / 1024 ** 2).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

export interface CorrelationKey {
  precision: string;
  layer: number;
  tensor: string;
  /** 0 when the graph does not say (the estimator then checks its budget as chunks arrive). */
  width: number;
}

export interface CorrelationPassPlan {
  /** The keys of each pass; the first is the main pass (predictions and every other measure). */
  passes: CorrelationKey[][];
  /** What correlation may hold at once: min(correlation.memory_budget_gb, memory_budget_gb − the other parts). */
  allowanceBytes: number;
  /** One batch's Gram at the widest key (held while it is folded in). */
  gramBytes: number;
  /** The most any pass's finish holds for clustering (finishScratchBytes). */
  finishBytes: number;
  /** The largest of a pass's co-moments + one Gram + its finish: the correlation part of the estimate. */
  peakBytes: number;
  /** Set when one key cannot fit even alone: the one-line reason, and the budget key that binds. */
  refusal?: { message: string; key: 'memory_budget_gb' | 'correlation.memory_budget_gb' };
}

/**
 * Bytes of one batch's Gram of `rows` tokens: the upper block triangle twice (ONNX Runtime's
 * output buffers, which its arena keeps, and their JS copies: at d_ff 18,944 one run added
 * 1.43 GB of RSS for 0.67 GiB of blocks, and later runs nothing), plus the centred batch and its
 * transpose (and the float64 cast).
 */
export function gramTransientBytes(width: number, rows: number, compute: GramCompute, block = DEFAULT_GRAM_BLOCK): number {
  const b = gramBlocks(width, block);
  let blockElems = 0;
  for (let i = 0; i < b.length; i++) for (let j = i; j < b.length; j++) blockElems += b[i].size * b[j].size;
  const elem = compute === 'float64' ? 8 : 4;
  return (2 * blockElems + 3 * rows * width) * elem;
}

export interface PassBudget {
  correlationBudgetBytes: number;
  runBudgetBytes: number;
  /** Every other part of the run's estimate (sessions, quantization, attribution, baseline). */
  otherBytes: number;
  /** Tokens of the largest batch (batch.max_tokens). */
  rows: number;
  compute: GramCompute;
  /** `correlation.clusters` (default true): the finish clusters, on a distance matrix per thread. */
  clusters?: boolean;
}

/**
 * Bytes a pass's finish holds besides the co-moments: each finishing thread clusters one
 * component at a time on a full c×c float64 distance matrix (correlation-finish.ts,
 * DistanceScratch), c at most min(width, CLUSTER_AUTO_LIMIT) neurons (above that many non-constant
 * neurons clustering is skipped), and the finish runs on two threads when the pass has two keys or
 * more and one is at least PARALLEL_MIN_WIDTH wide (correlation-finish-parallel.ts). Counted on
 * top of the Gram, whose ONNX Runtime buffers its session keeps until the run releases it.
 */
export function finishScratchBytes(pass: readonly { width: number }[], clusters = true): number {
  if (!clusters || !pass.length) return 0;
  const c = Math.min(CLUSTER_AUTO_LIMIT, Math.max(...pass.map((k) => k.width)));
  const threads = pass.length >= 2 && pass.some((k) => k.width >= PARALLEL_MIN_WIDTH) ? 2 : 1;
  return threads * c * c * 8;
}

/** Groups of keys whose co-moments fit the allowance together, in key order. */
export function planCorrelationPasses(keys: CorrelationKey[], b: PassBudget): CorrelationPassPlan {
  const width = Math.max(0, ...keys.map((k) => k.width));
  const gramBytes = width > 0 ? gramTransientBytes(width, b.rows, b.compute) : 0;
  const runLeft = b.runBudgetBytes - b.otherBytes;
  const binding = b.correlationBudgetBytes <= runLeft ? 'correlation.memory_budget_gb' : 'memory_budget_gb';
  const allowanceBytes = Math.min(b.correlationBudgetBytes, runLeft);
  const finishOf = (pass: CorrelationKey[]) => finishScratchBytes(pass, b.clusters);
  /** What a pass holds at its peak: its keys' co-moments, one Gram and its finish. */
  const holds = (pass: CorrelationKey[]) => pass.reduce((s, k) => s + correlationMemoryBytes(k.width, 1), 0) + gramBytes + finishOf(pass);
  // When the other parts alone exceed the run's budget, the run's own check names them.
  if (runLeft <= 0 && binding === 'memory_budget_gb') return { passes: [keys], allowanceBytes, gramBytes, finishBytes: finishOf(keys), peakBytes: holds(keys) };
  const widest = keys.reduce((a, k) => (k.width > a.width ? k : a), keys[0]);
  if (keys.length && holds([widest]) > allowanceBytes) {
    const one = correlationMemoryBytes(widest.width, 1), finish = finishOf([widest]);
    const why = binding === 'correlation.memory_budget_gb' ? 'correlation.memory_budget_gb' : `memory_budget_gb ${size(b.runBudgetBytes)} less the other parts' ${size(b.otherBytes)}`;
    const message =
      `correlation of ${widest.precision} layer ${widest.layer} (width ${widest.width}) needs ${size(one + gramBytes + finish)} ` +
      `(${widest.width}·${widest.width + 1}/2 × 8 B co-moments + ${size(gramBytes)} for one batch's Gram${finish ? ` + ${size(finish)} to cluster at the finish` : ''}), ${size(one + gramBytes + finish - allowanceBytes)} over the ${size(allowanceBytes)} left for correlation (${why}); ` +
      'raise the budget, lower batch.max_tokens or capture a narrower layer';
    return { passes: [keys], allowanceBytes, gramBytes, finishBytes: finishOf(keys), peakBytes: holds(keys), refusal: { message, key: binding } };
  }
  const passes: CorrelationKey[][] = [];
  let current: CorrelationKey[] = [];
  for (const k of keys) {
    if (current.length && holds([...current, k]) > allowanceBytes) {
      passes.push(current);
      current = [];
    }
    current.push(k);
  }
  if (current.length) passes.push(current);
  return { passes, allowanceBytes, gramBytes, finishBytes: Math.max(0, ...passes.map(finishOf)), peakBytes: Math.max(0, ...passes.map(holds)) };
}

/** One line for `validate` and the estimate's detail: keys, passes, what each holds. */
export function describePasses(p: CorrelationPassPlan): string {
  const keys = p.passes.reduce((s, g) => s + g.length, 0);
  const width = Math.max(0, ...p.passes.flat().map((k) => k.width));
  const per = correlationMemoryBytes(width, 1);
  const passes = p.passes.length === 1 ? '1 pass' : `${p.passes.length} passes of ≤ ${Math.max(...p.passes.map((g) => g.length))} keys`;
  return `${keys} layer×precision keys × ${width}·${width + 1}/2 × 8 B = ${gib(per * keys)} GiB in ${passes} (allowance ${gib(p.allowanceBytes)} GiB) + Gram ${gib(p.gramBytes)} GiB + finish ≤ ${gib(p.finishBytes)} GiB`;
}

/** summary.json's record of the passes. */
export function passesRecord(p: CorrelationPassPlan): Record<string, unknown> {
  const r = (b: number) => Math.round((b / GiB) * 1000) / 1000;
  return {
    count: p.passes.length,
    allowance_gib: r(p.allowanceBytes),
    peak_gib: r(p.peakBytes),
    passes: p.passes.map((g, i) => ({
      pass: i + 1,
      precisions: [...new Set(g.map((k) => k.precision))],
      layers: [...new Set(g.map((k) => k.layer))],
      keys: g.map((k) => `${k.precision}/${k.layer}`),
    })),
  };
}
