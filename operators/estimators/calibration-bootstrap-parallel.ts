/**
 * The calibration bootstrap (calibration-bootstrap.ts) split between this thread and one worker
 * thread, for the end of a large run: at n = 100k its 1000 resamples are about 0.35–0.5 s of one
 * core (3.5 ns a draw measured; more under load). The caller stays synchronous: resamples go in
 * chunks that both threads claim from a shared counter, this thread computes chunks until none is
 * left and then waits (Atomics.wait) only for chunks the worker has claimed. A worker that is
 * still starting, or fails to start, claims nothing, so this thread never waits on a start-up; a
 * claimed chunk not done in time is computed here too (the same values, so nothing depends on
 * which thread wrote it). Each resample's draws start from its own jumped generator state, so the
 * values are bit-identical to one thread.
 *
 * The worker is eval'd source (workerProgram), not a file, and takes jobs as messages, so the end
 * of a run can start it early (warmBootstrapWorker): a worker loading a .ts file under tsx
 * failed (Node 20: ERR_UNKNOWN_FILE_EXTENSION, the loader is not registered there), and source
 * needs no path that differs between the sources and dist/. Once started it runs the kernel on a
 * small made-up input (warmKernel), so the real job's first chunk runs optimized code: in a fresh
 * process the first 10 resamples at n = 100k took 17–28 ms cold against 4.5 ms after it (the
 * warm-up itself 13–25 ms, which a warmed worker spends while the run closes and reads predictions).
 */
import type { Worker } from 'node:worker_threads';
import { startEvalWorker } from '../../core/eval-worker.ts';
import { bootstrapAccuracyAce, bootstrapKernelSource, bootstrapRange, type BootstrapDraws } from './calibration-bootstrap.ts';

/**
 * Below this many draws (n × resamples) a worker's start-up (~50 ms) costs more than it saves.
 * With the one-item-a-turn kernel break-even was near 5M (n = 5k), a third faster at 10M; with
 * the unrolled one, a worker started per call (fresh processes, 1000 resamples) is about even at
 * 10M (52–62 ms against 48–51 on one thread) and ahead at 20M (62–73 against 72–104). The end of
 * a run warms the worker before it needs it (warmBootstrapWorker), so there start-up is not paid:
 * warmed 150 ms ahead, 10M took 29–34 ms against 44–62 on one thread.
 */
export const PARALLEL_MIN_DRAWS = 10_000_000;
/**
 * Chunks of a job: at most one is left in flight on the worker when this thread runs out, so
 * smaller ones cut that final wait (at n = 100k, 1000 resamples: median 4–10 ms with 32 chunks,
 * 0–1 ms with 128); claiming one is an Atomics.add.
 */
const MAX_CHUNKS = 128;
// control[NEXT] is the next unclaimed chunk, control[DONE + c] 1 once chunk c is written.
const NEXT = 0, DONE = 1;

/** What the worker gets: shared memory only, so nothing is copied back. */
export interface BootstrapJob {
  control: Int32Array;
  conf: Float64Array;
  correct: Uint8Array;
  accuracy: Float64Array;
  ace: Float64Array;
  massBins: number;
  resamples: number;
  seed: number;
  /** min(MAX_CHUNKS, resamples), so no chunk is empty. */
  chunks: number;
}

export interface ParallelDraws extends BootstrapDraws {
  /** Resamples the worker computed (0 when it started too late to claim any). */
  workerResamples: number;
}

export interface ParallelOptions {
  /** 'auto' starts a worker from PARALLEL_MIN_DRAWS draws; tests force 'always' or 'never'. */
  threads?: 'auto' | 'always' | 'never';
  /** Tests: wait this long for the worker's first claim before claiming here, so it surely takes a share. */
  awaitWorkerMs?: number;
}

function chunkBounds(c: number, job: BootstrapJob): [number, number] {
  return [Math.floor((c * job.resamples) / job.chunks), Math.floor(((c + 1) * job.resamples) / job.chunks)];
}

/** Claims and computes chunks until none is left; the chunks this thread did. */
export function runChunks(job: BootstrapJob): number[] {
  const counts = new Uint8Array(job.conf.length);
  const mine: number[] = [];
  for (let c = Atomics.add(job.control, NEXT, 1); c < job.chunks; c = Atomics.add(job.control, NEXT, 1)) {
    Atomics.notify(job.control, NEXT); // a test waits for the worker's first claim
    const [from, to] = chunkBounds(c, job);
    bootstrapRange(job.conf, job.correct, job.massBins, job.seed, from, to, job.accuracy, job.ace, counts);
    Atomics.store(job.control, DONE + c, 1);
    Atomics.notify(job.control, DONE + c);
    mine.push(c);
  }
  return mine;
}

function sharedCopy<T extends Float64Array | Uint8Array>(make: (b: SharedArrayBuffer) => T, src: T): T {
  const out = make(new SharedArrayBuffer(src.byteLength));
  out.set(src);
  return out;
}

/** Runs the kernel on made-up input of the jobs' array kinds, so V8 optimizes it before a real job. */
function warmKernel(n: number, resamples: number): void {
  const conf = new Float64Array(new SharedArrayBuffer(8 * n)), correct = new Uint8Array(new SharedArrayBuffer(n));
  for (let i = 0; i < n; i++) {
    conf[i] = i / n;
    correct[i] = i & 1;
  }
  bootstrapRange(conf, correct, 10, 1, 0, resamples, new Float64Array(resamples), new Float64Array(resamples), new Uint8Array(n));
}

/**
 * The worker's program: the kernel's and this file's functions as source (they reference only
 * each other, these constants and globals), a warm-up, then claim chunks. Built once, on first use.
 */
let workerSource: string | null = null;
function workerProgram(): string {
  workerSource ??= [
    bootstrapKernelSource(),
    `const NEXT = ${NEXT}, DONE = ${DONE};`,
    String(chunkBounds), String(runChunks), String(warmKernel),
    'warmKernel(4096, 64);', // 262k draws; a job posted meanwhile waits in the queue
    "require('node:worker_threads').parentPort.on('message', (job) => runChunks(job));",
  ].join('\n');
  return workerSource;
}

/** A worker waiting for jobs (posted, so it can start before the job exists); null if it cannot start. */
function startWorker(): Worker | null {
  return startEvalWorker(workerProgram());
}

let warmWorker: Worker | null = null;

/**
 * Starts the worker ahead of the bootstraps that will need it (the end of a run calls this before
 * it closes and reads predictions.parquet), so its ~50 ms start-up overlaps that work and it takes
 * its full share; every bootstrap until releaseBootstrapWorker uses it. Only when `draws` (n ×
 * resamples of the largest bootstrap to come) reach PARALLEL_MIN_DRAWS.
 */
export function warmBootstrapWorker(draws: number): void {
  if (warmWorker === null && draws >= PARALLEL_MIN_DRAWS) warmWorker = startWorker();
}

/** Ends the warmed worker, if any. */
export function releaseBootstrapWorker(): void {
  if (warmWorker) void warmWorker.terminate();
  warmWorker = null;
}

/** bootstrapAccuracyAce's values (same arguments, `conf`/`correct` by rank), on two threads when it pays. */
export function parallelBootstrapAccuracyAce(conf: Float64Array, correct: Uint8Array, massBins: number, resamples: number, seed: number, opts: ParallelOptions = {}): ParallelDraws {
  const mode = opts.threads ?? 'auto';
  const n = conf.length;
  if (mode === 'never' || (mode === 'auto' && n * resamples < PARALLEL_MIN_DRAWS)) return { ...bootstrapAccuracyAce(conf, correct, massBins, resamples, seed), workerResamples: 0 };
  const job: BootstrapJob = {
    control: new Int32Array(new SharedArrayBuffer(4 * (DONE + MAX_CHUNKS))),
    conf: sharedCopy((b) => new Float64Array(b), conf),
    correct: sharedCopy((b) => new Uint8Array(b), correct),
    accuracy: new Float64Array(new SharedArrayBuffer(8 * resamples)),
    ace: new Float64Array(new SharedArrayBuffer(8 * resamples)),
    massBins, resamples, seed, chunks: Math.min(MAX_CHUNKS, resamples),
  };
  const owned = warmWorker === null;
  const worker = warmWorker ?? startWorker();
  worker?.postMessage(job);
  if (worker && opts.awaitWorkerMs) Atomics.wait(job.control, NEXT, 0, opts.awaitWorkerMs);
  const t0 = performance.now();
  const mine = runChunks(job);
  const perChunk = (performance.now() - t0) / Math.max(1, mine.length);
  let workerResamples = 0;
  for (let c = 0; c < job.chunks; c++) {
    if (mine.includes(c)) continue;
    const [from, to] = chunkBounds(c, job);
    workerResamples += to - from;
    // A chunk the worker claimed: wait for it, but not forever (a stalled or failed worker).
    if (Atomics.load(job.control, DONE + c) === 0 && Atomics.wait(job.control, DONE + c, 0, 100 + 10 * perChunk) === 'timed-out') {
      bootstrapRange(job.conf, job.correct, massBins, seed, from, to, job.accuracy, job.ace, new Uint8Array(n));
      workerResamples -= to - from;
    }
  }
  if (worker && owned) void worker.terminate();
  return { accuracy: job.accuracy.slice(), ace: job.ace.slice(), workerResamples };
}
