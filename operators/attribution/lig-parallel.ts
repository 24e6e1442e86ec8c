/**
 * attributeByLength on N worker threads, each with its own attribution session (lig-worker.ts):
 * onnxruntime-node's session.run is synchronous on the calling JS thread, so sessions in one
 * thread never overlap; workers do. Examples are grouped by exact length as attributeByLength
 * groups them, whole groups go to workers (balanced by cost, assignGroups), and each group runs
 * attributeBatch as on one session: results are bit-identical to attributeByLength on one session
 * with the same settings (same threads per session), in the same order, with the same warnings.
 *
 * Why (measured with .cache scratch rounds on 2 cores, 16 mixed-length BoolQ prompts, 50 steps,
 * prepacked; medians of 3 interleaved rounds): 2 workers × 1 intra-op thread against one session
 * × 2 threads gave 1.24× examples/s on stories260K layer 2, 1.23× at layer 0 and 1.21× on the demo
 * bench model (hidden 256, d_ff 1024) layer 2: on kernels this small ONNX Runtime's intra-op pool
 * gains ~1.5× from its second thread (Softmax, the mask Where dominate), two sessions ~1.9×.
 * The gain shrinks as kernels grow: 1.31× at the demo model's layer 0, 1.12× on the ~0.1B bench
 * Llama (hidden 768, d_ff 2048, layer 0, 4 prompts, 8 steps). autoAttributionWorkers is that rule.
 */
import { Worker } from 'node:worker_threads';
import { QuantlensError, type ErrorCode } from '../../core/errors.ts';
import type { createAttributionSession, LigOptions, LigResult } from './lig.ts';

type SessionOptions = NonNullable<Parameters<typeof createAttributionSession>[2]>;

/** What a worker opens its session with: plain data (a FeedBuilder function cannot cross threads). */
export interface WorkerSetup {
  model: string;
  tensor: string;
  options: Omit<SessionOptions, 'feeds'>;
  /** A 2-step attribution of a 4-token row before 'ready' (ORT's first run allocates; benches). */
  warmUp?: boolean;
}

/** LigOptions that cross to a worker (the warning callback stays here; targets go per group). */
export type WorkerLigOptions = Omit<LigOptions, 'onWarning' | 'targets'>;

export interface WorkerRun {
  type: 'run';
  id: number;
  /** The session to run on (the worker reopens or switches to it). */
  setup: WorkerSetup;
  groups: { ids: Int32Array[]; targets?: (number | undefined)[] }[];
  opts: WorkerLigOptions;
}

type WorkerReply =
  | { type: 'ready' }
  | { type: 'parked' }
  | { type: 'done'; id: number; groups: { results: LigResult[]; warnings: string[] }[] }
  | { type: 'error'; id?: number; code: ErrorCode; message: string };

/**
 * The widest attributed activation (the MLP's d_ff) at which worker sessions were measured to beat
 * one session's intra-op pool: 2048, the ~0.1B bench Llama (1.12×; stories260K's 172 gave
 * 1.23–1.44×, the demo model's 1024 1.21–1.31×). Wider kernels are unmeasured, and ONNX Runtime's
 * pool scales better on them: one session there.
 */
export const WORKERS_MAX_WIDTH = 2048;

/**
 * Worker sessions for attribution, by rule: one per intra-op thread (each session 1 thread) on the
 * CPU when the attributed width is at most WORKERS_MAX_WIDTH; else 1 (one session with every
 * thread: the path without workers). `forced` (salience.workers > 0) overrides the rule. The
 * memory budget may lower the count (pipelines/budget.ts withWorkers).
 */
export function autoAttributionWorkers(o: { threads: number; width: number; executionProviders: string[]; forced?: number }): { workers: number; why: string } {
  if (o.forced && o.forced > 0) return { workers: o.forced, why: `salience.workers: ${o.forced}` };
  if (o.executionProviders.some((p) => p !== 'cpu')) return { workers: 1, why: `one session: execution providers ${o.executionProviders.join(', ')} (workers are measured on the CPU only)` };
  if (o.threads < 2) return { workers: 1, why: 'one session: 1 intra-op thread' };
  if (!(o.width > 0) || o.width > WORKERS_MAX_WIDTH) return { workers: 1, why: `one session: attributed width ${o.width || 'unknown'} > ${WORKERS_MAX_WIDTH} (larger kernels: the intra-op pool scales)` };
  return { workers: o.threads, why: `${o.threads} worker sessions × 1 thread: attributed width ${o.width} ≤ ${WORKERS_MAX_WIDTH} (small kernels: the intra-op pool gains less than separate sessions)` };
}

/** Intra-op threads of each worker's session: the run's threads shared out, at least 1. */
export function threadsPerWorker(threads: number, workers: number): number {
  return Math.max(1, Math.floor(threads / workers));
}

/** attributeByLength's groups: example indices per exact length, lengths ascending, indices in order. */
export function lengthGroups(examples: { ids: Int32Array }[]): { length: number; indices: number[] }[] {
  const groups = new Map<number, number[]>();
  examples.forEach((e, i) => {
    const g = groups.get(e.ids.length);
    if (g) g.push(i);
    else groups.set(e.ids.length, [i]);
  });
  return [...groups.keys()].sort((a, b) => a - b).map((length) => ({ length, indices: groups.get(length)! }));
}

/**
 * Groups per worker, longest-processing-time first: a group of E examples of T tokens runs
 * E·(steps + 2) rows of T tokens, so its cost is ∝ T·E; the costliest group goes to the least
 * loaded worker. Each worker's list is in ascending length (the order attributeByLength runs).
 * Workers left without a group get an empty list.
 */
export function assignGroups(groups: { length: number; indices: number[] }[], workers: number): number[][] {
  const load = new Array<number>(workers).fill(0);
  const out: number[][] = Array.from({ length: workers }, () => []);
  const order = groups.map((_, g) => g).sort((a, b) => groups[b].length * groups[b].indices.length - groups[a].length * groups[a].indices.length || a - b);
  for (const g of order) {
    let w = 0;
    for (let k = 1; k < workers; k++) if (load[k] < load[w]) w = k;
    load[w] += groups[g].length * groups[g].indices.length;
    out[w].push(g);
  }
  return out.map((gs) => gs.sort((a, b) => a - b));
}

/** The source of a worker that loads lig-worker (.ts under tsx in a source tree, .js in a build). */
function workerSource(): string {
  const ts = import.meta.url.endsWith('.ts');
  const url = new URL(`./lig-worker.${ts ? 'ts' : 'js'}`, import.meta.url).href;
  // A .ts worker file does not load under tsx's --import hook on Node 20 (core/eval-worker.ts): tsx's API does.
  // Its URL is resolved here: an eval'd worker resolves bare names from the working directory,
  // where a run started outside the clone finds no tsx.
  return ts ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ tsImport }) => tsImport(${JSON.stringify(url)}, ${JSON.stringify(import.meta.url)}))` : `import(${JSON.stringify(url)})`;
}

interface Slot {
  worker: Worker;
  /** The reply awaited (ready, a run's done, parked), with what settles it. */
  pending: { resolve: (r: WorkerReply) => void; reject: (e: Error) => void } | null;
  /** That reply's promise, settled either way (what release waits for). */
  inflight: Promise<unknown>;
  /** The thread has ended (crashed, or closed), with this exit code. */
  exited: boolean;
  exitCode?: number;
  /** "attribution worker k of n", how its errors name it. */
  who: string;
}

/** How long a worker asked to close may take before it is terminated. */
const CLOSE_TIMEOUT_MS = 10_000;

/** N worker sessions of one (model, layer tensor); see the file comment. */
export class ParallelAttribution {
  private nextId = 0;
  private failed: Error | null = null;
  private closed = false;

  private constructor(
    private slots: Slot[],
    /** The session the workers open at start, and the one attribute() runs on unless given another. */
    readonly setup: WorkerSetup,
  ) {}

  /** Workers in use (threads: each its own session). */
  get workers(): number {
    return this.slots.length;
  }

  /**
   * Starts `workers` workers, each opening a session of `model` at `tensor` with `options` (give
   * a cacheDir the graph is already in: each worker otherwise builds it). Resolves once every
   * session is open; any worker's failure rejects with one error and closes them all.
   */
  static async start(setup: WorkerSetup, workers: number): Promise<ParallelAttribution> {
    if (!(workers >= 1) || !Number.isInteger(workers)) throw new QuantlensError('CONFIG', `attribution workers: must be an integer ≥ 1 (got ${workers})`);
    const source = workerSource();
    const slots: Slot[] = [];
    const p = new ParallelAttribution(slots, setup);
    for (let k = 0; k < workers; k++) {
      const slot: Slot = { worker: new Worker(source, { eval: true, workerData: setup }), pending: null, inflight: Promise.resolve(), exited: false, who: `attribution worker ${k + 1} of ${workers}` };
      slots.push(slot);
      p.wire(slot);
    }
    await p.all(slots.map((s) => p.ask(s)));
    p.idle();
    return p;
  }

  private wire(slot: Slot): void {
    const settle = (m: WorkerReply | Error) => {
      const pending = slot.pending;
      slot.pending = null;
      if (m instanceof Error) pending?.reject(m);
      else pending?.resolve(m);
    };
    const who = slot.who;
    slot.worker.on('message', (m: WorkerReply) => settle(m.type === 'error' ? new QuantlensError(m.code, `${who}: ${m.message}`) : m));
    slot.worker.on('error', (e: Error) => settle(new QuantlensError('UNSUPPORTED', `${who} failed: ${e.message}`, undefined, { cause: e })));
    slot.worker.on('exit', (code) => {
      slot.exited = true;
      slot.exitCode = code;
      settle(new QuantlensError('UNSUPPORTED', `${who} exited (code ${code}) before it answered`));
    });
  }

  /** Posts `message` (none: the ready a new worker sends by itself) and resolves with the worker's reply. */
  private ask(slot: Slot, message?: object): Promise<WorkerReply> {
    // A thread that ended while idle answers nothing: posting to it would wait forever.
    if (slot.exited) return Promise.reject(new QuantlensError('UNSUPPORTED', `${slot.who} exited (code ${slot.exitCode}) while idle`));
    const reply = new Promise<WorkerReply>((resolve, reject) => (slot.pending = { resolve, reject }));
    slot.inflight = reply.catch(() => undefined);
    if (message) slot.worker.postMessage(message);
    return reply;
  }

  /**
   * Every request settled, then the first error thrown, after closing every worker. A worker is
   * never terminated inside a native call: terminating one while it is in session.run aborts the
   * whole process (onnxruntime-node's addon throws a C++ exception into a dying environment).
   */
  private async all<T>(requests: Promise<T>[]): Promise<T[]> {
    const settled = await Promise.allSettled(requests);
    const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failure) return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
    this.failed = failure.reason as Error;
    await this.release();
    throw failure.reason;
  }

  // Workers keep the process alive only while they work: an idle runner never blocks exit.
  private idle(): void {
    for (const s of this.slots) s.worker.unref();
  }

  /**
   * attributeByLength(examples) on the workers: same results, same order, and opts.onWarning
   * called with the same warnings in the same order (after the run). `setup`: another session for
   * the same workers (each closes its session and opens that one: one pool serves every
   * (precision, layer) of a run, one session per worker at a time). A worker's error rejects
   * with that one error, once every worker has finished its part, and closes every worker; the
   * runner refuses later calls.
   */
  async attribute(examples: { ids: Int32Array }[], layerTensor: string, opts: LigOptions = {}, setup: WorkerSetup = this.setup): Promise<LigResult[]> {
    if (layerTensor !== setup.tensor) throw new QuantlensError('CONFIG', `attribution workers' session is for "${setup.tensor}", not "${layerTensor}"`);
    if (this.failed) throw this.failed;
    if (this.closed) throw new QuantlensError('UNSUPPORTED', `attribution workers were released`);
    const groups = lengthGroups(examples);
    const plan = assignGroups(groups, this.slots.length);
    const { onWarning, targets, ...shared } = opts;
    const out = new Array<LigResult>(examples.length);
    const warnings = new Array<string[]>(groups.length);
    for (const s of this.slots) s.worker.ref();
    try {
      await this.all(
        plan.map(async (gs, w) => {
          if (gs.length === 0) return;
          const run: WorkerRun = { type: 'run', id: this.nextId++, setup, groups: gs.map((g) => ({ ids: groups[g].indices.map((i) => examples[i].ids), targets: targets ? groups[g].indices.map((i) => targets[i]) : undefined })), opts: shared };
          const r = await this.ask(this.slots[w], run);
          if (r.type !== 'done' || r.id !== run.id) throw new QuantlensError('UNSUPPORTED', `attribution worker ${w + 1}: unexpected reply ${r.type}`);
          gs.forEach((g, k) => {
            groups[g].indices.forEach((i, j) => (out[i] = r.groups[k].results[j]));
            warnings[g] = r.groups[k].warnings;
          });
        }),
      );
    } finally {
      this.idle();
    }
    const warn = onWarning ?? ((m: string) => console.warn(m));
    for (const ws of warnings) for (const w of ws ?? []) warn(w);
    return out;
  }

  /** Closes every worker's session until the next attribute (which reopens them; pipelines/salience.ts parks between uses). */
  async park(): Promise<void> {
    if (this.closed || this.failed) return;
    for (const s of this.slots) s.worker.ref();
    try {
      await this.all(this.slots.map((s) => this.ask(s, { type: 'park' })));
    } finally {
      this.idle();
    }
  }

  /** Closes every worker (its session released, then its thread ends) once its current request is done. */
  async release(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(
      slots.map(async (s) => {
        s.worker.ref(); // the wait for its exit keeps the process alive
        await s.inflight;
        if (s.exited) return;
        s.worker.removeAllListeners('exit');
        const exited = new Promise<void>((resolve) => s.worker.once('exit', () => resolve()));
        s.worker.postMessage({ type: 'close' });
        const timer = setTimeout(() => void s.worker.terminate(), CLOSE_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}
