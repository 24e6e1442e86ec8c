/**
 * Correlation's finish split between this thread and one worker thread, key by key: at d_ff 4096
 * one key's finish (8.4M pairs, then UPGMA on a component of up to ~4,000 neurons) is 0.13–0.35 s
 * of one core, and a run has a key per (precision, layer). The caller stays synchronous, as in
 * calibration-bootstrap-parallel.ts: keys are claimed from a shared counter, this thread finishes
 * keys until none is left, then waits (Atomics.wait) only for keys the worker claimed. A worker
 * still starting, or failing to start, claims nothing; a claimed key not done in time is finished
 * here too (the same numbers, so nothing depends on which thread wrote them).
 *
 * The co-moments are shared, not copied: CoMoments keeps its packed triangle on a
 * SharedArrayBuffer. Each key's numbers come back packed in one shared Float64Array, which both
 * threads write the same way, and the worker runs the source of correlation-finish.ts itself
 * (finishSource): the same code on the same doubles, so the result is bit-identical to one thread.
 * The worker is eval'd source for the reason calibration-bootstrap-parallel.ts gives (a .ts
 * worker file does not load under tsx on Node 20).
 */
import type { Worker } from 'node:worker_threads';
import { startEvalWorker } from '../../core/eval-worker.ts';
import { DistanceScratch, finishSource, keyNumbers, type FinishSettings, type KeyMoments, type KeyNumbers } from './correlation-finish.ts';
import { HISTOGRAM_BINS } from './correlation-pairs.ts';

/** From this width a key's finish (≥ 2M pairs) outweighs a worker's start-up (~50 ms). */
export const PARALLEL_MIN_WIDTH = 2048;

// control[NEXT] is the next unclaimed key, control[DONE + k] 1 once key k's numbers are written.
const NEXT = 0, DONE = 1;

/** What the worker gets: shared memory (and the small min/max copies), nothing copied back. */
export interface FinishJob {
  control: Int32Array;
  keys: KeyMoments[];
  settings: FinishSettings;
  /** Per key `stride` doubles: undefined pairs, constant neurons, clusters, independent (NaN: not clustered), the histogram, the top-pair count, then i, j, r per top pair. */
  results: Float64Array;
  stride: number;
  bins: number;
}

export interface ParallelFinish {
  numbers: KeyNumbers[];
  /** Keys the worker finished (0 when it started too late to claim any, or was not used). */
  workerKeys: number;
}

export interface ParallelFinishOptions {
  /** 'auto' uses a worker for two or more keys from PARALLEL_MIN_WIDTH neurons; tests force 'always' or 'never'. */
  threads?: 'auto' | 'always' | 'never';
  /** Tests: wait this long for the worker's first claim before claiming here, so it surely takes a key. */
  awaitWorkerMs?: number;
}

/** Writes key k's numbers into its slot of the shared results. */
function writeNumbers(job: FinishJob, k: number, x: KeyNumbers): void {
  const out = job.results, at = k * job.stride;
  out[at] = x.undefinedPairs;
  out[at + 1] = x.constantNeurons;
  out[at + 2] = x.clusters === null ? NaN : x.clusters;
  out[at + 3] = x.independent === null ? NaN : x.independent;
  for (let b = 0; b < job.bins; b++) out[at + 4 + b] = x.hist[b];
  const t = at + 4 + job.bins;
  out[t] = x.top.length;
  x.top.forEach((p, q) => {
    out[t + 1 + 3 * q] = p.i;
    out[t + 2 + 3 * q] = p.j;
    out[t + 3 + 3 * q] = p.r;
  });
}

function readNumbers(job: FinishJob, k: number): KeyNumbers {
  const out = job.results, at = k * job.stride, t = at + 4 + job.bins;
  const top = Array.from({ length: out[t] }, (_, q) => ({ i: out[t + 1 + 3 * q], j: out[t + 2 + 3 * q], r: out[t + 3 + 3 * q] }));
  const orNull = (v: number) => (Number.isNaN(v) ? null : v);
  return { hist: out.slice(at + 4, at + 4 + job.bins), undefinedPairs: out[at], constantNeurons: out[at + 1], top, clusters: orNull(out[at + 2]), independent: orNull(out[at + 3]) };
}

/** Claims and finishes keys until none is left; the keys this thread did. */
export function runKeys(job: FinishJob, scratch = new DistanceScratch()): number[] {
  const mine: number[] = [];
  for (let k = Atomics.add(job.control, NEXT, 1); k < job.keys.length; k = Atomics.add(job.control, NEXT, 1)) {
    Atomics.notify(job.control, NEXT); // a test waits for the worker's first claim
    writeNumbers(job, k, keyNumbers(job.keys[k], job.settings, scratch));
    Atomics.store(job.control, DONE + k, 1);
    Atomics.notify(job.control, DONE + k);
    mine.push(k);
  }
  return mine;
}

let workerSource: string | null = null;
function workerProgram(): string {
  workerSource ??= [
    // tsx (esbuild keepNames) names classes through this helper; the compiled dist/ has none.
    'var __name = (f) => f;',
    finishSource(),
    `const NEXT = ${NEXT}, DONE = ${DONE};`,
    String(writeNumbers),
    String(runKeys),
    "require('node:worker_threads').parentPort.on('message', (job) => runKeys(job));",
  ].join('\n');
  return workerSource;
}

function startWorker(): Worker | null {
  return startEvalWorker(workerProgram());
}

/** keyNumbers of every key, in order, on two threads when it pays. */
export function finishKeys(keys: KeyMoments[], settings: FinishSettings, opts: ParallelFinishOptions = {}): ParallelFinish {
  const mode = opts.threads ?? 'auto';
  const wide = keys.length >= 2 && keys.some((k) => k.width >= PARALLEL_MIN_WIDTH);
  if (mode === 'never' || (mode === 'auto' && !wide) || keys.length === 0) {
    const scratch = new DistanceScratch();
    return { numbers: keys.map((k) => keyNumbers(k, settings, scratch)), workerKeys: 0 };
  }
  const stride = 4 + HISTOGRAM_BINS + 1 + 3 * Math.max(0, settings.topK);
  const job: FinishJob = {
    control: new Int32Array(new SharedArrayBuffer(4 * (DONE + keys.length))),
    keys: keys.map((k) => ({ width: k.width, n: k.n, upper: k.upper, min: Float64Array.from(k.min), max: Float64Array.from(k.max) })),
    settings: { topK: settings.topK, threshold: settings.threshold, cluster: settings.cluster },
    results: new Float64Array(new SharedArrayBuffer(8 * stride * keys.length)),
    stride,
    bins: HISTOGRAM_BINS,
  };
  const worker = startWorker();
  worker?.postMessage(job);
  if (worker && opts.awaitWorkerMs) Atomics.wait(job.control, NEXT, 0, opts.awaitWorkerMs);
  const scratch = new DistanceScratch();
  const t0 = performance.now();
  const mine = runKeys(job, scratch);
  const slowest = (performance.now() - t0) / Math.max(1, mine.length);
  let workerKeys = 0;
  for (let k = 0; k < keys.length; k++) {
    if (mine.includes(k)) continue;
    workerKeys++;
    // A key the worker claimed: wait for it, but not forever (a stalled or failed worker).
    if (Atomics.load(job.control, DONE + k) === 0 && Atomics.wait(job.control, DONE + k, 0, 200 + 10 * slowest) === 'timed-out') {
      writeNumbers(job, k, keyNumbers(job.keys[k], job.settings, scratch));
      workerKeys--;
    }
  }
  if (worker) void worker.terminate();
  return { numbers: keys.map((_, k) => readNumbers(job, k)), workerKeys };
}
