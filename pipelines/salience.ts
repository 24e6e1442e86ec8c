/**
 * `measure: salience`: Layer Integrated Gradients at each captured layer and precision, through
 * the backward graphs quantlens builds (onnx/backward/), aggregated by the paper's rule
 * (operators/attribution/salience.ts). Attribution costs ~2·steps forward+backward passes per
 * example, so `salience.limit` bounds how many examples are attributed.
 */
import path from 'node:path';
import type { Plan } from './plan.ts';
import type { BatchResult } from '../operators/infer.ts';
import { attributeByLength, createAttributionSession, releaseAttributionSession, reopenAttributionSession, type AttributionSession, type LigOptions, type LigResult } from '../operators/attribution/lig.ts';
import { ParallelAttribution, type WorkerSetup } from '../operators/attribution/lig-parallel.ts';
import { defaultCacheDir } from './precisions.ts';
import { QuantlensError } from '../core/errors.ts';
import { SalienceEstimator, type SalienceState, type SalienceResult } from '../operators/attribution/salience.ts';
import type { ActivationSite } from '../onnx/capture.ts';
import { goldTarget } from '../operators/choices.ts';

/** When this run attributes: in the stream per batch, or in a pass of its own after it (pipelines/salience-pass.ts). */
export function salienceSchedule(plan: Pick<Plan, 'memory'>): 'during' | 'after' {
  return plan.memory?.salience?.schedule ?? 'during';
}

/**
 * Whether `salience.limit` selects an example: the first N of the selection by row index, not by
 * arrival order, so shards, resumes and a single run attribute exactly the same examples.
 */
export function isSelected(plan: Pick<Plan, 'cfg'>, exampleId: number): boolean {
  return exampleId - (plan.cfg.dataset.skip ?? 0) < (plan.cfg.salience.limit ?? Infinity);
}

/** The batch's examples that `salience.limit` selects. */
export function selectedExamples(plan: Pick<Plan, 'cfg'>, batch: BatchResult['batch']): BatchResult['batch']['examples'] {
  return batch.examples.filter((e) => isSelected(plan, e.example_id));
}

export interface AttributionRunner {
  precision: string;
  site: ActivationSite;
  /** The session, opened again (same graph, AttributionSession.reopen) after park() or release(). */
  open(): Promise<AttributionSession>;
  /** attributeByLength on this runner's session, or on the run's worker sessions when it has them (same results as one session of their threads). */
  attribute(examples: { ids: Int32Array }[], opts: LigOptions): Promise<LigResult[]>;
  /** Between uses: closes the session unless it is the run's only runner, which stays open. */
  park(): Promise<void>;
  release(): Promise<void>;
}

/** A runner over one prepared attribution session, whose ORT session is closed and reopened. */
function lazyRunner(precision: string, site: ActivationSite, prepared: AttributionSession, keepOpen: boolean): AttributionRunner {
  let s = prepared;
  let live = true;
  const release = async () => {
    if (!live) return;
    live = false;
    await releaseAttributionSession(s);
  };
  const open = async () => {
    if (!live) s = await reopenAttributionSession(s);
    live = true;
    return s;
  };
  return {
    precision,
    site,
    open,
    attribute: async (examples, opts) => attributeByLength(await open(), examples, site.tensor, opts),
    park: () => (keepOpen ? Promise.resolve() : release()),
    release,
  };
}

/**
 * The run's attribution worker sessions (operators/attribution/lig-parallel.ts), started on first
 * use: every runner's attribution goes to the same N workers, each of which holds one session at a
 * time (it switches to the runner's graph, read from the cache), so the run holds N sessions
 * whatever P·C is; they stay open between batches (the budget counts them, pipelines/budget.ts)
 * and end with the measure.
 */
class WorkerPool {
  private pool: Promise<ParallelAttribution> | null = null;
  constructor(readonly workers: number) {}
  get(setup: WorkerSetup): Promise<ParallelAttribution> {
    return (this.pool ??= ParallelAttribution.start(setup, this.workers));
  }
  async release(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (pool) await (await pool.catch(() => null))?.release();
  }
}

/** A runner whose attribution runs on the worker pool; its main-thread session (the prepared one, closed) serves open() only. */
function pooledRunner(base: AttributionRunner, pool: WorkerPool, setup: WorkerSetup): AttributionRunner {
  return {
    ...base,
    attribute: async (examples, opts) => (await pool.get(setup)).attribute(examples, setup.tensor, opts, setup),
    release: async () => {
      await base.release();
      await pool.release();
    },
  };
}

/**
 * One attribution runner per (precision, layer); each graph is built (and cached) before the run
 * so errors come first, then its session is closed again: every session maps the model's weights
 * (graphs reference them, weight-references.ts), so holding P·C of them would count the weights
 * P·C times. SalienceMeasure reopens one at a time from the graph bytes already built or read
 * from the cache (operators/attribution/graph-cache.ts); a single runner stays open. With worker
 * sessions in the estimate (plan.memory.salience.workers > 1), attribution runs on them instead.
 */
export async function createAttributionRunners(plan: Pick<Plan, 'cfg' | 'precisions' | 'sites' | 'session' | 'tokenizer' | 'cacheDir'> & Partial<Pick<Plan, 'runners' | 'memory'>>): Promise<AttributionRunner[]> {
  const budget = plan.cfg.salience.memory_budget_gb;
  if (!(budget > 0)) throw new QuantlensError('CONFIG', `salience.memory_budget_gb: must be > 0 (got ${budget})`, path.basename(plan.cfg.file || 'pipeline'));
  const cacheDir = plan.cacheDir ?? defaultCacheDir();
  // Prepacked weights only where the budget counted their copy (pipelines/budget.ts withPrepacking).
  const prepack = plan.memory?.salience?.prepack ?? false;
  // Worker sessions only where the budget counted them (pipelines/budget.ts withWorkers).
  const workers = plan.memory?.salience?.workers ?? 1;
  const pool = workers > 1 ? new WorkerPool(workers) : null;
  const workerSettings = { ...plan.session, intraOpThreads: plan.memory?.salience?.threadsPerWorker ?? 1 };
  const out: AttributionRunner[] = [];
  for (const p of plan.precisions)
    for (const site of plan.sites) {
      // The inference runner's input plan knows the model's padding side and past layout (genai models).
      const inputPlan = plan.runners?.find((r) => r.precision === p.precision)?.plan;
      const options = { padId: plan.tokenizer.padId, externalDataDir: path.dirname(p.path), inputPlan, cacheDir, prepack };
      const prepared = await createAttributionSession(p.path, site.tensor, { ...options, settings: plan.session });
      const runner = lazyRunner(p.precision, site, prepared, !pool && plan.precisions.length * plan.sites.length === 1);
      await runner.park();
      out.push(pool ? pooledRunner(runner, pool, { model: p.path, tensor: site.tensor, options: { ...options, settings: workerSettings } }) : runner);
    }
  return out;
}

export class SalienceMeasure {
  readonly estimator: SalienceEstimator;
  warnings = 0;
  /** Called as each (precision, layer) of a batch is attributed: a batch can take minutes (the progress line shows it). */
  onProgress?: (done: number, total: number) => void;

  constructor(
    private plan: Plan,
    public runners: AttributionRunner[],
    private log: (line: string) => void = () => undefined,
  ) {
    this.estimator = new SalienceEstimator({ threshold: plan.cfg.salience.threshold, normalise: plan.cfg.salience.normalise });
  }

  /** Attributes the batch's selected examples; returns the seconds spent per precision. */
  async update(r: Pick<BatchResult, 'batch'>): Promise<Map<string, number>> {
    const seconds = new Map<string, number>();
    const { salience } = this.plan.cfg;
    const examples = selectedExamples(this.plan, r.batch);
    if (examples.length === 0) return seconds;
    // A gold target may need the choices' shared tokens fed after the prompt (operators/choices.ts).
    const gold = salience.target === 'gold' ? examples.map((e) => goldTarget(this.plan.tokenizer, e, this.plan.template.render(e.fields), this.plan.cfg.scoring.choices ?? [], this.plan.maxContext)) : undefined;
    const inputs = examples.map((e, k) => ({ ids: gold ? gold[k].ids : e.ids }));
    const targets = gold?.map((g) => g.target);
    for (const [i, a] of this.runners.entries()) {
      this.onProgress?.(i, this.runners.length);
      const t0 = performance.now();
      // Grouped by length, not by the inference batch's padding; rows per run bounded by the budget.
      const results = await a.attribute(inputs, {
        memoryBudgetBytes: salience.memory_budget_gb * 1024 ** 3,
        steps: salience.steps,
        baselineTokenId: salience.baseline_token_id,
        targets,
        adaptiveSteps: salience.adaptive,
        onWarning: () => this.warnings++,
      });
      await a.park();
      seconds.set(a.precision, (seconds.get(a.precision) ?? 0) + (performance.now() - t0) / 1000);
      results.forEach((res, k) =>
        this.estimator.update({
          precision: a.precision,
          layer: a.site.layer,
          tensor: a.site.tensor,
          exampleId: examples[k].example_id,
          attributions: res.attributions,
          positions: res.positions,
          width: res.width,
          completenessError: res.completenessError,
          converged: res.converged,
        }),
      );
    }
    return seconds;
  }

  state(): SalienceState {
    return this.estimator.state();
  }

  merge(s: SalienceState): void {
    this.estimator.merge(s);
  }

  finish(): SalienceResult {
    const { steps, adaptive } = this.plan.cfg.salience;
    // The count is per (precision, layer, example): each attribution is flagged on its own.
    const within = adaptive ? `with adaptive steps (${steps} doubled up to 1024)` : `within ${steps} steps`;
    const hint = adaptive ? 'raise salience.steps or check the model for piecewise-constant ops such as int8 activation rounding' : 'try salience.adaptive: true';
    if (this.warnings) this.log(`quantlens: salience: ${this.warnings} attribution(s) did not reach completeness ${within} (flagged in summary.json; ${hint})`);
    return this.estimator.finish();
  }

  async release(): Promise<void> {
    for (const a of this.runners) await a.release();
  }
}
