/**
 * The measures of a run: which estimators exist for the configured `measure:` list, how each
 * BatchResult updates them, and how they finish into output files. Per-example records go to
 * predictions.parquet as they arrive (the compact columnar spill that exact ACE is computed from).
 */
import path from 'node:path';
import type { Plan } from './plan.ts';
import type { BatchResult } from '../operators/infer.ts';
import { NeuronsEstimator, type NeuronsState } from '../operators/estimators/neurons.ts';
import { MomentsRunner } from '../operators/estimators/moments-graph.ts';
import type { ActivationSite } from '../onnx/capture.ts';
import { CorrelationEstimator, type CorrelationState, type CorrelationSummary } from '../operators/estimators/correlation.ts';
import { AgreementEstimator, jaccard, type AgreementState, type AgreementRow } from '../operators/estimators/agreement.ts';
import { scorePredictions, type Scoring, type ScoreRow } from '../operators/score.ts';
import { scoreLoglik } from '../operators/loglik.ts';
import { scoreChoices } from '../operators/choices.ts';
import { writeParquetTable, type ParquetSink } from '../sinks/parquet.ts';
import {
  AGREEMENT_COLUMNS,
  CORRELATION_COLUMNS,
  DEAD_COLUMNS,
  NEURONS_COLUMNS,
  PREDICTIONS_COLUMNS,
  openPredictionsSink,
  SALIENCE_COLUMNS,
  toColumns,
} from '../sinks/output-schemas.ts';
import { QuantlensError } from '../core/errors.ts';
import { splitLabels } from '../sources/tokenizer.ts';
import { SalienceMeasure, createAttributionRunners, salienceSchedule } from './salience.ts';
import type { SalienceState } from '../operators/attribution/salience.ts';
import { openActivationDump, type ActivationDump } from '../sinks/activation-dump.ts';
import { PerplexityEstimator, type PerplexitySummary } from '../operators/estimators/perplexity.ts';
import { PERPLEXITY_COLUMNS } from '../sinks/perplexity-columns.ts';

export interface MeasureStates {
  neurons?: NeuronsState;
  correlation?: CorrelationState;
  agreement?: AgreementState;
  salience?: SalienceState;
}

export interface FinishedExtras {
  correlation?: CorrelationSummary[];
  dead?: Record<string, Record<string, { dead: number; total: number }>>;
  salience?: Record<string, Record<string, { union_count: number; width: number; examples: number; completeness: unknown }>>;
  perplexity?: PerplexitySummary;
}

export interface PrecisionTally {
  examples: number;
  tokens: number;
  truncated: number;
  /** Awaited session.run of the inference pass (prompt forward, captures). */
  inference_seconds: number;
  /** Extra scoring passes: loglik continuations, choices' shared tokens (0 in first-token mode). */
  loglik_seconds: number;
  /** Layer Integrated Gradients (`salience`), every layer of this precision. */
  attribution_seconds: number;
}

export function scoringFor(plan: Plan): Scoring {
  const { scoring } = plan.cfg;
  if (scoring.mode === 'choices') {
    // Checked on the labels alone before any run; each prompt is split again in context (operators/choices.ts).
    const labels = scoring.choices ?? [];
    const split = splitLabels(plan.tokenizer, labels);
    if (typeof split === 'string') throw new QuantlensError('CONFIG', `scoring.choices: ${split}; use scoring.mode: loglik`, 'scoring.choices');
    return { mode: 'choices', choices: Object.fromEntries(labels.map((c, k) => [c, split.tokens[k]])) };
  }
  if (scoring.mode === 'loglik') return { mode: 'loglik' };
  return { mode: 'first-token', decode: (id) => plan.tokenizer.decodeToken(id) };
}

export class RunMeasures {
  readonly neurons?: NeuronsEstimator;
  readonly correlation?: CorrelationEstimator;
  readonly agreement?: AgreementEstimator;
  salience?: SalienceMeasure;
  readonly perplexity?: PerplexityEstimator;
  readonly tally = new Map<string, PrecisionTally>();
  private predictions?: ParquetSink;
  /** predictions.parquet itself, written alongside the checkpoint parts of a fresh run (checkpoint.ts). */
  private finalPredictions?: ParquetSink;
  /** Optional raw activation dumps, one file per (precision, layer tensor). */
  private dumps = new Map<string, ActivationDump>();
  private readonly scoring: Scoring;
  private readonly reference: string;

  constructor(
    private plan: Plan,
    private outDir: string,
    /** Given by `quantlens merge`, which finishes shards' states without a tokenizer (and never calls update). */
    scoring?: Scoring,
    /** Where warnings go (the run's `log`; stderr by default). */
    log: (line: string) => void = (l) => process.stderr.write(l + '\n'),
  ) {
    const m = new Set(plan.cfg.measure);
    const { cfg } = plan;
    this.reference = cfg.agreement.reference ?? cfg.precisions[0];
    if (m.has('neurons') || m.has('dead') || m.has('agreement'))
      this.neurons = new NeuronsEstimator({ nearZero: { lo: cfg.dead.lo, hi: cfg.dead.hi }, runner: new MomentsRunner(plan.session) });
    if (m.has('correlation'))
      this.correlation = new CorrelationEstimator({
        budgetBytes: cfg.correlation.memory_budget_gb * 1024 ** 3,
        topK: cfg.correlation.top_k,
        clusterThreshold: cfg.correlation.threshold,
        cluster: cfg.correlation.clusters ? 'auto' : false,
        compute: cfg.correlation.compute,
        settings: plan.session,
      });
    if (m.has('agreement')) this.agreement = new AgreementEstimator(this.reference);
    // Attribution sessions are created in open(); a merge only needs the estimator.
    if (m.has('salience')) this.salience = new SalienceMeasure(plan, [], log);
    if (m.has('perplexity')) this.perplexity = new PerplexityEstimator(this.reference, cfg.precisions, cfg.perplexity.positions);
    this.scoring = scoring ?? scoringFor(plan);
    for (const p of cfg.precisions) this.tally.set(p, { examples: 0, tokens: 0, truncated: 0, inference_seconds: 0, loglik_seconds: 0, attribution_seconds: 0 });
  }

  /**
   * `predictionsFile` is a part file under <output>/state/ when the run checkpoints
   * (pipelines/checkpoint.ts); `alongside`, when given, receives every row too.
   */
  async open(predictionsFile = path.join(this.outDir, 'predictions.parquet'), alongside?: string): Promise<void> {
    // Scheduled after the stream, attribution sessions open only once the inference sessions are released (salience-pass.ts).
    if (this.salience && salienceSchedule(this.plan) === 'during') this.salience.runners = await createAttributionRunners(this.plan);
    // Predictions are always recorded: calibration, agreement flips and the report read them.
    this.predictions = await openPredictionsSink(predictionsFile, this.plan.metadata);
    if (alongside) this.finalPredictions = await openPredictionsSink(alongside, this.plan.metadata);
    const a = this.plan.cfg.activations;
    if (a) {
      for (const p of this.plan.cfg.precisions)
        for (const site of this.plan.sites) {
          const file = path.join(this.outDir, 'activations', `${p}-layer${site.layer}.${a.format === 'parquet' ? 'parquet' : 'arrow'}`);
          this.dumps.set(`${p}|${site.tensor}`, await openActivationDump(file, { format: a.format, every: a.every, limit: a.limit, metadata: this.plan.metadata }));
        }
    }
  }

  async update(r: BatchResult): Promise<void> {
    const truncated = r.batch.examples.map((e) => e.truncated);
    const correctBy = new Map<string, Uint8Array>();
    for (const o of r.outputs) {
      const t0 = performance.now();
      const rows = this.scoring.mode === 'first-token' ? scorePredictions(o.prediction, this.scoring) : await this.choiceRows(r, o);
      const scoringSeconds = this.scoring.mode === 'first-token' ? 0 : (performance.now() - t0) / 1000;
      correctBy.set(o.precision, Uint8Array.from(rows, (x) => (x.correct ? 1 : 0)));
      const cols = toColumns(rows, PREDICTIONS_COLUMNS);
      cols.truncated = truncated;
      if (this.plan.cfg.predictions.prompt) cols.prompt = this.texts(r);
      await this.predictions!.append(cols);
      await this.finalPredictions?.append(cols);
      const t = this.tally.get(o.precision)!;
      t.examples += rows.length;
      t.tokens += r.batch.realTokens;
      t.truncated += truncated.filter(Boolean).length;
      t.inference_seconds += o.seconds;
      t.loglik_seconds += scoringSeconds;
      for (const ms of o.moments) await this.neurons?.update(ms);
      for (const c of o.chunks) {
        await this.dumps.get(`${c.precision}|${c.tensor}`)?.write(c);
        if (o.moments.length === 0) await this.neurons?.update(c);
        if (this.correlation) await this.correlation.update(c);
      }
    }
    const attribution = salienceSchedule(this.plan) === 'during' ? await this.salience?.update(r) : undefined;
    for (const [p, sec] of attribution ?? []) this.tally.get(p)!.attribution_seconds += sec;
    if (this.perplexity) {
      const outputs = r.outputs.map((o) => ({ precision: o.precision, logits: o.allLogits! }));
      this.perplexity.update({ seqLen: r.batch.seqLen, vocab: r.outputs[0].prediction.vocab, lengths: r.batch.lengths, ids: r.batch.examples.map((e) => e.ids), outputs });
    }
    if (this.agreement) {
      const ref = r.outputs.find((o) => o.precision === this.reference)!;
      for (const o of r.outputs) {
        if (o === ref) continue;
        this.agreement.update({ ref: ref.prediction, q: o.prediction, refCorrect: correctBy.get(ref.precision), qCorrect: correctBy.get(o.precision) });
        ref.chunks.forEach((c, k) => this.agreement!.update({ ref: c, q: o.chunks[k] }));
      }
    }
  }

  /**
   * The states as checkpoints and shards store them: JSON, except correlation's co-moments, which
   * go to the binary file `dir/correlationFile` (operators/estimators/correlation-state-file.ts).
   */
  async statesAt(dir: string, correlationFile: string): Promise<MeasureStates> {
    return { neurons: this.neurons?.state(), correlation: await this.correlation?.saveState(dir, correlationFile), agreement: this.agreement?.state(), salience: this.salience?.state() };
  }

  /** `dir`: the folder of the state JSON, where its binary files are. */
  merge(s: MeasureStates, dir?: string): void {
    if (s.neurons) this.neurons?.merge(s.neurons);
    if (s.correlation) this.correlation?.merge(s.correlation, dir);
    if (s.agreement) this.agreement?.merge(s.agreement);
    if (s.salience) this.salience?.merge(s.salience);
  }

  /** Close the current predictions file (rename into place) and continue in `next` (checkpoint part files). */
  async rotatePredictions(next: string): Promise<void> {
    await this.predictions?.close();
    this.predictions = await openPredictionsSink(next, this.plan.metadata);
  }

  /** Close the predictions file (rename into place), and predictions.parquet when written alongside. */
  async closePredictions(): Promise<void> {
    await this.predictions?.close();
    this.predictions = undefined;
    await this.finalPredictions?.close();
    this.finalPredictions = undefined;
    for (const d of this.dumps.values()) await d.close();
    this.dumps.clear();
  }

  /** Free ORT sessions owned by estimators (correlation Gram graph, attribution graphs). */
  async release(): Promise<void> {
    await this.neurons?.release();
    await this.correlation?.release();
    await this.salience?.release();
  }

  async abort(): Promise<void> {
    this.perplexity?.dispose();
    await this.predictions?.abort();
    this.predictions = undefined;
    await this.finalPredictions?.abort();
    this.finalPredictions = undefined;
    for (const d of this.dumps.values()) await d.abort();
    this.dumps.clear();
  }

  private texts(r: BatchResult): string[] {
    return r.batch.examples.map((e) => this.plan.template.render(e.fields));
  }

  /** `scoring.mode: choices` / `loglik`: teacher-forced or extra forward passes over (prompt + choice). */
  private choiceRows(r: BatchResult, o: BatchResult['outputs'][number]): Promise<ScoreRow[]> {
    const runner = this.plan.runners.find((x) => x.precision === o.precision)!;
    const labels = this.plan.cfg.scoring.choices ?? [];
    const opts = { maxContext: this.plan.maxContext };
    if (this.scoring.mode === 'choices') return scoreChoices(runner, o.prediction, r.batch.examples, this.texts(r), labels, this.plan.tokenizer, opts);
    return scoreLoglik(runner, r.batch.examples, this.texts(r), labels, this.plan.tokenizer, opts);
  }

  /** Jaccard overlap of a neuron set of each precision with the reference's, per captured layer. */
  private overlapRows(metric: string, setOf: (precision: string, site: ActivationSite) => Set<number> | undefined): AgreementRow[] {
    const rows: AgreementRow[] = [];
    for (const p of this.plan.cfg.precisions) {
      if (p === this.reference) continue;
      for (const s of this.plan.sites) {
        const a = setOf(this.reference, s);
        const b = setOf(p, s);
        // Two empty sets agree completely.
        if (a && b) rows.push({ precision: p, reference: this.reference, layer: s.layer, tensor: s.tensor, metric, value: a.size + b.size === 0 ? 1 : jaccard(a, b) });
      }
    }
    return rows;
  }

  /** Write every estimator's table; returns extra summary fields. */
  async finish(): Promise<FinishedExtras> {
    const meta = this.plan.metadata;
    const measures = new Set(this.plan.cfg.measure);
    const extra: FinishedExtras = {};
    if (this.neurons && measures.has('neurons')) {
      const rows = this.neurons.finish();
      await writeParquetTable(path.join(this.outDir, 'neurons.parquet'), NEURONS_COLUMNS, meta, toColumns(rows, NEURONS_COLUMNS) as Record<string, ArrayLike<unknown>>);
    }
    let deadSets: Map<string, Set<number>> | undefined;
    if (this.neurons && (measures.has('dead') || measures.has('agreement'))) {
      const dead = this.neurons.dead();
      deadSets = new Map(dead.rows.map((r) => [`${r.precision}|${r.tensor}`, new Set(r.dead_ids)]));
      if (measures.has('dead')) {
        await writeParquetTable(path.join(this.outDir, 'dead.parquet'), DEAD_COLUMNS, meta, toColumns(dead.rows, DEAD_COLUMNS) as Record<string, ArrayLike<unknown>>);
        extra.dead = {};
        for (const r of dead.rows) (extra.dead[r.precision] ??= {})[String(r.layer)] = { dead: r.dead_count, total: r.total };
      }
    }
    if (this.correlation) {
      const res = await this.correlation.finish();
      await writeParquetTable(path.join(this.outDir, 'correlation.parquet'), CORRELATION_COLUMNS, meta, toColumns(res.rows, CORRELATION_COLUMNS) as Record<string, ArrayLike<unknown>>);
      extra.correlation = res.summaries;
    }
    let salientSets: Map<string, Set<number>> | undefined;
    if (this.salience) {
      const res = this.salience.finish();
      await writeParquetTable(path.join(this.outDir, 'salience.parquet'), SALIENCE_COLUMNS, meta, toColumns(res.rows, SALIENCE_COLUMNS) as Record<string, ArrayLike<unknown>>);
      extra.salience = {};
      for (const l of res.layers) (extra.salience[l.precision] ??= {})[String(l.layer)] = { union_count: l.union_count, width: l.width, examples: l.examples, completeness: l.completeness };
      salientSets = new Map();
      for (const r of res.rows) {
        if (r.salient_examples === 0) continue;
        const k = `${r.precision}|${r.layer}`;
        if (!salientSets.has(k)) salientSets.set(k, new Set());
        salientSets.get(k)!.add(r.neuron);
      }
    }
    if (this.agreement) {
      const rows: AgreementRow[] = this.agreement.finish();
      if (deadSets) rows.push(...this.overlapRows('dead_jaccard', (p, s) => deadSets.get(`${p}|${s.tensor}`)));
      if (salientSets) rows.push(...this.overlapRows('salient_jaccard', (p, s) => salientSets.get(`${p}|${s.layer}`) ?? new Set<number>()));
      await writeParquetTable(path.join(this.outDir, 'agreement.parquet'), AGREEMENT_COLUMNS, meta, toColumns(rows, AGREEMENT_COLUMNS) as Record<string, ArrayLike<unknown>>);
    }
    if (this.perplexity) {
      const res = this.perplexity.finish();
      await writeParquetTable(path.join(this.outDir, 'perplexity.parquet'), PERPLEXITY_COLUMNS, meta, toColumns(res.rows, PERPLEXITY_COLUMNS) as Record<string, ArrayLike<unknown>>);
      extra.perplexity = res.summary;
    }
    return extra;
  }
}
