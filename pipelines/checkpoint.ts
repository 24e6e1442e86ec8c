/**
 * Resume and shard merge rest on one fact: everything a run has accumulated is a JSON value —
 * the estimator states (RunMeasures.statesAt()), per-precision tallies, token counts, and the ids
 * and token lengths of the examples consumed so far (the ledger).
 *
 * A checkpoint (<output>/state/checkpoint.json) adds the position: how many batches were folded
 * in (and, in a multi-pass correlation run, which pass comes next). Correlation's co-moments are
 * a binary file beside it (state/correlation-b<batches>.f64), named per checkpoint so that the
 * previous checkpoint's file stays valid until the new checkpoint.json has replaced the old. The
 * ledger's examples are binary files too, one per checkpoint holding only its new examples and
 * bound by a hash chain, so a checkpoint's size does not grow with the run (pipelines/ledger.ts).
 * Batching is deterministic (same data and options → same batch sequence), so resuming reads
 * and tokenizes the first N batches again but skips their inference. The predictions written so
 * far live beside it as part files predictions-<k>.parquet; the run keeps appending to the next
 * part. A fresh run writes predictions.parquet as it goes too, so only a resumed run concatenates
 * the parts into predictions.parquet at the end.
 *
 * A shard's state.json adds the plan facts that `quantlens merge` needs to write the outputs of
 * one run without opening the model (pipelines/merge.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { QuantlensError } from '../core/errors.ts';
import { syncPath, writeFileAtomically } from '../core/atomic-write.ts';
import { faultPoint } from '../core/fault-point.ts';
import type { Batch } from '../core/types.ts';
import type { BatchResult } from '../operators/infer.ts';
import type { TokenizeStats } from '../operators/encode.ts';
import type { ActivationSite } from '../onnx/capture.ts';
import type { Plan, PrecisionInfo } from './plan.ts';
import type { MeasureStates, RunMeasures } from './measures.ts';
import { PREDICTIONS_COLUMNS, openPredictionsSink } from '../sinks/output-schemas.ts';
import { StateChecker } from './state-check.ts';
import { RunLedger, type CheckpointLedger, type LedgerState } from './ledger.ts';
import { findLedgerFiles, type LedgerFileRange } from './ledger-chain.ts';

export const STATE_DIR = 'state';
export const CHECKPOINT_FILE = 'checkpoint.json';
export const SHARD_STATE_FILE = 'state.json';
/**
 * 4: the ledger's examples in per-checkpoint files (pipelines/ledger.ts), no longer inline;
 * 5: those files found by listing the state folder and bound by a SHA-256 chain, no longer listed.
 */
const CHECKPOINT_FORMAT = 'quantlens-checkpoint/5';
/** Correlation state files in a state folder (checkpoint generations and retired passes). */
const CORRELATION_FILE = /^correlation-.+\.f64$/;
export const SHARD_STATE_FORMAT = 'quantlens-shard-state/1';

// ---------------------------------------------------------------------------------------------
// The identity of a run's results: two states merge only when this hash agrees.

/** JSON with sorted keys, so the hash does not depend on how the config object was built. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/**
 * Hash of everything that decides the numbers: the pipeline (less where it is written, which
 * slice runs, how often it checkpoints, and the model path, which the content hash stands for),
 * the model's content hash and each precision's quantization settings.
 */
export function configHash(plan: Pick<Plan, 'cfg' | 'modelHash' | 'precisions'>): string {
  const { pipeline, precisions } = identityParts(plan);
  return sha256(canonicalJson({ pipeline, model: plan.modelHash, precisions }));
}

function identityParts(plan: Pick<Plan, 'cfg' | 'precisions'>): { pipeline: object; precisions: object } {
  const { file: _file, output: _output, checkpoint_every: _every, model: _model, ...rest } = plan.cfg;
  const pipeline = { ...rest, dataset: { ...rest.dataset, shard: undefined } };
  const precisions = plan.precisions.map((p) => ({ precision: p.precision, settings: p.settings }));
  return { pipeline, precisions };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * What a checkpoint continues, part by part, so that a refusal can say what changed: the
 * pipeline, the model's content hash, the quantization settings, the quantlens version and the
 * dataset (path, size, mtime, and a hash of the rows consumed so far, checked as they are re-read).
 */
export interface RunFingerprint {
  version: string;
  pipeline: string;
  model: string;
  precisions: string;
  dataset: { path: string; size: number | null; mtimeMs: number | null; rows: string };
}

function fingerprintOf(plan: Plan, rows: string): RunFingerprint {
  const { pipeline, precisions } = identityParts(plan);
  const file = plan.dataset.path;
  const st = file !== 'demo' && existsSync(file) ? statSync(file) : null;
  return {
    version: plan.metadata['quantlens.version'],
    pipeline: sha256(canonicalJson(pipeline)),
    model: plan.modelHash,
    precisions: sha256(canonicalJson(precisions)),
    dataset: { path: file, size: st?.size ?? null, mtimeMs: st ? Math.floor(st.mtimeMs) : null, rows },
  };
}

/** The first difference between a checkpoint's fingerprint and this run's, as a sentence, or null. */
function fingerprintChange(old: RunFingerprint, now: RunFingerprint): string | null {
  const short = (h: string) => h.slice(0, 12);
  if (old.version !== now.version) return `it was written by quantlens ${old.version}, this is ${now.version}`;
  if (old.pipeline !== now.pipeline) return `checkpoint belongs to a different pipeline or model: the pipeline changed (hash ${short(old.pipeline)} ≠ ${short(now.pipeline)})`;
  if (old.model !== now.model) return `checkpoint belongs to a different pipeline or model: the model changed (hash ${short(old.model)} ≠ ${short(now.model)})`;
  if (old.precisions !== now.precisions) return `checkpoint belongs to a different pipeline or model: the quantization settings changed (hash ${short(old.precisions)} ≠ ${short(now.precisions)})`;
  const [a, b] = [old.dataset, now.dataset];
  if (a.path !== b.path) return `the dataset path changed (${a.path} → ${b.path})`;
  if (a.size !== b.size) return `the dataset ${b.path} changed since the checkpoint (size ${a.size} → ${b.size} bytes)`;
  if (a.mtimeMs !== b.mtimeMs)
    return `the dataset ${b.path} was modified since the checkpoint (mtime ${new Date(a.mtimeMs ?? 0).toISOString()} → ${new Date(b.mtimeMs ?? 0).toISOString()})`;
  return null;
}

/** A running hash of the rows a run has consumed (id, gold, token ids), in batch order. */
class RowsHash {
  private readonly h = createHash('sha256');
  add(batch: Batch): void {
    for (const e of batch.examples) {
      this.h.update(`${e.example_id}\u0000${e.gold}\u0000`);
      this.h.update(new Uint8Array(e.ids.buffer, e.ids.byteOffset, e.ids.byteLength));
    }
  }
  digest(): string {
    return this.h.copy().digest('hex');
  }
}

// ---------------------------------------------------------------------------------------------
// Predictions part files.

/** Rows of one predictions file, in file order (small files: parts and shards). */
export async function readPredictionRows(file: string): Promise<Record<string, unknown>[]> {
  try {
    const buf = await asyncBufferFromFile(file);
    const meta = await parquetMetadataAsync(buf);
    if (Number(meta.num_rows) === 0) return [];
    return (await parquetReadObjects({ file: buf, metadata: meta })) as Record<string, unknown>[];
  } catch (e) {
    throw new QuantlensError('STATE', `cannot read predictions (${(e as Error).message.split('\n')[0]})`, file, { cause: e });
  }
}

/** Write rows (objects) as predictions.parquet, appended in slices so row groups match a single run. */
export async function writePredictionRows(finalPath: string, metadata: Record<string, string>, rows: Iterable<Record<string, unknown>> | AsyncIterable<Record<string, unknown>>): Promise<number> {
  const sink = await openPredictionsSink(finalPath, metadata);
  try {
    let slice: Record<string, unknown>[] = [];
    const flush = async () => {
      if (!slice.length) return;
      const cols: Record<string, unknown[]> = {};
      for (const c of PREDICTIONS_COLUMNS) cols[c.name] = slice.map((r) => r[c.name]);
      await sink.append(cols);
      slice = [];
    };
    for await (const r of rows) {
      slice.push(r);
      if (slice.length >= 8192) await flush();
    }
    await flush();
    await sink.close();
    return sink.rows;
  } catch (e) {
    await sink.abort();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints of one run.

export interface Checkpoint {
  format: string;
  configHash: string;
  fingerprint: RunFingerprint;
  /** Batches folded into `states` (and written to parts 0 … parts-1). */
  batches: number;
  parts: number;
  states: MeasureStates;
  ledger: CheckpointLedger;
  /** Multi-pass correlation: the pass that runs next (0: the main pass, mid-way), and the plan's passes as key lists. */
  correlationPass?: number;
  correlationPasses?: string[][];
  /** Batches of `correlationPass` (an extra pass) already folded into the states. */
  passBatches?: number;
  /** With salience: its schedule (a resume must keep it); `after`: once its pass has begun, the batches it folded in. */
  salienceSchedule?: 'during' | 'after';
  saliencePass?: number;
}

/** The plan's correlation passes as key lists (what a checkpoint records and a resume must match). */
export function passKeys(plan: Plan): string[][] {
  return (plan.memory?.correlation?.passes ?? []).map((g) => g.map((k) => `${k.precision}/${k.layer}/${k.tensor}`));
}

/** Keys a checkpoint at `pass` holds: the first pass's while it runs, then every retired pass's, and the running pass's mid-way. */
function keysThrough(plan: Plan, pass: number, passBatches: number): number {
  const passes = plan.memory?.correlation?.passes;
  if (!passes || passes.length <= 1) return plan.cfg.precisions.length * plan.sites.length;
  return passes.slice(0, Math.max(1, passBatches > 0 ? pass + 1 : pass)).reduce((s, g) => s + g.length, 0);
}

const START_OVER = 'run without --resume to start over';

/** The checkpoint with every field checked (the estimator states are checked when merged). */
function readCheckpoint(file: string, plan: Plan): Checkpoint | null {
  if (!existsSync(file)) return null;
  let ck: Checkpoint;
  try {
    ck = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new QuantlensError('STATE', `checkpoint is not valid JSON (${(e as Error).message}); ${START_OVER}`, file);
  }
  // Older formats are not read: their ledger is inline or listed, and a resume across versions is refused anyway.
  if (ck?.format !== CHECKPOINT_FORMAT)
    throw new QuantlensError('STATE', `not a quantlens checkpoint of this version (format ${String(ck?.format)}, this quantlens reads ${CHECKPOINT_FORMAT}); ${START_OVER}`, file);
  const c = new StateChecker(file);
  c.string(ck.configHash, 'configHash');
  const f = c.object(ck.fingerprint, 'fingerprint');
  for (const k of ['version', 'pipeline', 'model', 'precisions'] as const) c.string(f[k], `fingerprint.${k}`);
  const d = c.object(f.dataset, 'fingerprint.dataset');
  c.string(d.path, 'fingerprint.dataset.path');
  c.string(d.rows, 'fingerprint.dataset.rows');
  c.count(ck.batches, 'batches');
  if (ck.batches < 1) c.fail('batches', 'is 0');
  c.count(ck.parts, 'parts', ck.batches);
  c.object(ck.states, 'states');
  c.checkpointLedger(ck.ledger, plan.cfg.precisions);
  if (ck.correlationPass !== undefined) c.count(ck.correlationPass, 'correlationPass', passKeys(plan).length);
  if (ck.passBatches !== undefined) c.count(ck.passBatches, 'passBatches', ck.batches);
  if (ck.saliencePass !== undefined) c.count(ck.saliencePass, 'saliencePass', ck.batches);
  const schedule = plan.memory?.salience?.schedule;
  // Checkpoints from before the schedule existed attributed during the stream.
  if (schedule && (ck.salienceSchedule ?? 'during') !== schedule)
    throw new QuantlensError('STATE', `the salience schedule changed since the checkpoint (${ck.salienceSchedule ?? 'during'} → ${schedule}; under auto the memory budget decides it); ${START_OVER}`, file);
  const passes = passKeys(plan);
  if (ck.correlationPasses === undefined ? passes.length > 1 : JSON.stringify(ck.correlationPasses) !== JSON.stringify(passes))
    throw new QuantlensError('STATE', `the correlation passes changed since the checkpoint (the memory budget decides them); ${START_OVER}`, file);
  return ck;
}

export class RunCheckpoints {
  /** Batches consumed so far, counting those restored from a checkpoint. */
  private batches: number;
  private readonly rows = new RowsHash();
  /** Main-pass batches appended to the open predictions part since it was opened. */
  private batchesSinceRotation = 0;
  /** A fresh run: see predictionsAlongside(). */
  private readonly alongside: boolean;

  private constructor(
    private readonly plan: Plan,
    private readonly outDir: string,
    private readonly measures: RunMeasures,
    /** Off when raw activations are dumped: those files are streams that cannot be cut into parts. */
    readonly enabled: boolean,
    readonly ledger: RunLedger,
    private readonly hash: string,
    /** Batches of the checkpoint to skip (0 for a fresh run). */
    readonly resumeAfter: number,
    private parts: number,
    /** The checkpoint's hash of the rows in those batches (null for a fresh run). */
    private readonly resumeRows: string | null = null,
    /** Multi-pass correlation: the pass to run next (0 for a fresh run, or one resumed in the main pass). */
    readonly correlationPass = 0,
    /** Batches of that extra pass already folded in (a resume skips them). */
    readonly passBatches = 0,
    /** Salience after the stream: batches of its pass already folded in (null: the pass has not begun). */
    readonly salienceBatches: number | null = null,
  ) {
    this.batches = resumeAfter;
    this.alongside = enabled && resumeAfter === 0 && parts === 0;
  }

  /** Main-pass batches consumed so far (a resumed run's included). */
  get batchesDone(): number {
    return this.batches;
  }

  get dir(): string {
    return path.join(this.outDir, STATE_DIR);
  }

  private partPath(k: number): string {
    return path.join(this.dir, `predictions-${k}.parquet`);
  }

  private get checkpointPath(): string {
    return path.join(this.dir, CHECKPOINT_FILE);
  }

  /**
   * Before measures.open(): with `resume`, restore a checkpoint into the (fresh) measures and
   * ledger, refusing one from another pipeline or model; otherwise clear any old state folder.
   */
  static open(plan: Plan, outDir: string, measures: RunMeasures, opts: { resume?: boolean; log?: (line: string) => void } = {}): RunCheckpoints {
    const dir = path.join(outDir, STATE_DIR);
    const file = path.join(dir, CHECKPOINT_FILE);
    const hash = configHash(plan);
    const enabled = !plan.cfg.activations;
    const ledger = new RunLedger();
    const ck = opts.resume ? readCheckpoint(file, plan) : null;
    // A shard's state.json is written last; until then this folder is not a finished shard.
    rmSync(path.join(outDir, SHARD_STATE_FILE), { force: true });
    if (!ck) {
      // A fresh start: parts of an older run must not mix with this one's.
      rmSync(dir, { recursive: true, force: true });
      return new RunCheckpoints(plan, outDir, measures, enabled, ledger, hash, 0, 0);
    }
    const changed = fingerprintChange(ck.fingerprint, fingerprintOf(plan, ck.fingerprint.dataset.rows));
    if (changed) throw new QuantlensError('STATE', `${changed}; ${START_OVER}`, file);
    if (ck.configHash !== hash)
      throw new QuantlensError('STATE', `checkpoint belongs to a different pipeline or model (config hash ${ck.configHash.slice(0, 12)} ≠ ${hash.slice(0, 12)}); ${START_OVER}`, file);
    const ledgerFiles = findLedgerFiles(dir, ck.ledger.examples, CHECKPOINT_FILE);
    keepListedParts(dir, ck, ledgerFiles, file);
    new StateChecker(file).mergeStates(ck.states, plan.cfg, measures, plan.sites.length, 'states', keysThrough(plan, ck.correlationPass ?? 0, ck.passBatches ?? 0));
    ledger.restore(ck.ledger, dir, ledgerFiles, measures.tally, file);
    opts.log?.(`quantlens: resuming after batch ${ck.batches} (${ck.ledger.tally[plan.cfg.precisions[0]]?.examples ?? 0} examples done) from ${file}`);
    return new RunCheckpoints(plan, outDir, measures, enabled, ledger, hash, ck.batches, ck.parts, ck.fingerprint.dataset.rows, ck.correlationPass ?? 0, ck.passBatches ?? 0, ck.saliencePass ?? null);
  }

  /** Where measures.open() should write predictions. */
  predictionsFile(): string {
    return this.enabled ? this.partPath(this.parts) : path.join(this.outDir, 'predictions.parquet');
  }

  /**
   * A fresh checkpointed run also writes predictions.parquet itself as the rows arrive (the parts
   * are only for a resume), so its end closes that file instead of reading every part back. A
   * resumed run's earlier rows exist only in parts: it assembles them at the end.
   */
  predictionsAlongside(): string | undefined {
    return this.alongside ? path.join(this.outDir, 'predictions.parquet') : undefined;
  }

  /** The batch stream without the batches the checkpoint already holds (read, not inferred). */
  async *skipDone(batches: AsyncIterable<Batch>): AsyncGenerator<Batch> {
    let seen = 0;
    for await (const b of batches) {
      if (seen >= this.resumeAfter) {
        yield b;
        continue;
      }
      this.rows.add(b);
      if (++seen === this.resumeAfter) this.verifyResumedRows();
    }
    if (seen < this.resumeAfter)
      throw new QuantlensError('STATE', `checkpoint claims ${this.resumeAfter} batches, but the dataset now gives only ${seen}; ${START_OVER}`, this.checkpointPath);
  }

  /** The re-read rows of the checkpointed batches must be the rows the checkpoint consumed. */
  private verifyResumedRows(): void {
    if (this.resumeRows !== null && this.rows.digest() !== this.resumeRows)
      throw new QuantlensError('STATE', `the dataset's rows in the first ${this.resumeAfter} batches differ from those the checkpoint consumed (content hash changed); ${START_OVER}`, this.checkpointPath);
  }

  /** After a batch is folded into the measures: book it, and checkpoint every `checkpoint_every`. */
  async afterBatch(r: BatchResult): Promise<void> {
    this.ledger.record(r.batch);
    this.rows.add(r.batch);
    this.batches++;
    this.batchesSinceRotation++;
    if (!this.enabled || this.batches % this.plan.cfg.checkpoint_every !== 0) return;
    await this.write();
  }

  /**
   * Multi-pass correlation: the pass before `next` is complete (pipelines/correlation-passes.ts).
   * A kill during a later pass resumes at its start; the main pass's batches are then skipped.
   */
  async passCompleted(next: number): Promise<void> {
    if (this.enabled) await this.write(next);
  }

  /** In extra pass `pass`, after its `done`-th batch: checkpoint every `checkpoint_every` batches, as the main pass does. */
  async passProgress(pass: number, done: number): Promise<void> {
    if (this.enabled && done % this.plan.cfg.checkpoint_every === 0) await this.write(pass, done);
  }

  /**
   * Salience after the stream (pipelines/salience-pass.ts), after its `done`-th batch: at 0 (its
   * boundary: the stream and any correlation passes complete), then every `checkpoint_every`.
   */
  async salienceProgress(done: number): Promise<void> {
    if (this.enabled && (done === 0 || done % this.plan.cfg.checkpoint_every === 0)) await this.write(passKeys(this.plan).length, 0, done);
  }

  private async write(correlationPass?: number, passBatches = 0, saliencePass?: number): Promise<void> {
    // Close the current part first: the checkpoint may only list parts that are complete. Extra
    // passes write no predictions: the first boundary after the stream closes its last part, unless
    // that part is empty (the last batch checkpointed, or a resume began past the stream), and
    // after it the open part stays empty.
    const boundary = (saliencePass === 0 || (saliencePass === undefined && correlationPass === 1 && passBatches === 0)) && this.batchesSinceRotation > 0;
    if (correlationPass === undefined || boundary) {
      this.batchesSinceRotation = 0;
      await this.measures.rotatePredictions(this.partPath(this.parts + 1));
      this.parts++;
    }
    const ck: Checkpoint = {
      format: CHECKPOINT_FORMAT,
      configHash: this.hash,
      fingerprint: fingerprintOf(this.plan, this.rows.digest()),
      batches: this.batches,
      parts: this.parts,
      states: await this.measures.statesAt(this.dir, `correlation-b${this.batches}-p${correlationPass ?? 0}-${passBatches}${saliencePass === undefined ? '' : `-s${saliencePass}`}.f64`),
      // Writes the examples since the previous checkpoint as a new ledger file first.
      ledger: await this.ledger.checkpointState(this.dir, this.measures.tally),
    };
    if (this.plan.memory?.correlation) Object.assign(ck, { correlationPass: correlationPass ?? 0, correlationPasses: passKeys(this.plan), passBatches });
    if (this.plan.memory?.salience) ck.salienceSchedule = this.plan.memory.salience.schedule;
    if (saliencePass !== undefined) ck.saliencePass = saliencePass;
    await writeFileAtomically(this.checkpointPath, JSON.stringify(ck));
    // The previous checkpoint's co-moments are garbage only now that checkpoint.json no longer names them.
    const keep = listedCorrelationFiles(ck);
    for (const name of readdirSync(this.dir)) if (CORRELATION_FILE.test(name) && !keep.has(name)) rmSync(path.join(this.dir, name), { force: true });
  }

  /** After measures.closePredictions(): predictions.parquet from the parts (one part is renamed). */
  async assemblePredictions(): Promise<void> {
    if (!this.enabled || this.alongside) return;
    const final = path.join(this.outDir, 'predictions.parquet');
    if (this.parts === 0) {
      renameSync(this.partPath(0), final);
      await syncPath(this.outDir);
      faultPoint('renamed', final);
      return;
    }
    const parts = Array.from({ length: this.parts + 1 }, (_, k) => this.partPath(k));
    async function* rows() {
      for (const p of parts) yield* await readPredictionRows(p);
    }
    await writePredictionRows(final, this.plan.metadata, rows());
  }

  /** After every output is written: the checkpoint goes first, so a kill mid-removal starts fresh. */
  complete(): void {
    rmSync(this.checkpointPath, { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** After a failure: keep a checkpoint to resume from, else leave no state folder behind. */
  cleanupAfterError(): void {
    if (!existsSync(this.checkpointPath)) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The binary correlation state files a checkpoint's states name. */
function listedCorrelationFiles(ck: Checkpoint): Set<string> {
  const entries = (ck.states?.correlation as { entries?: unknown } | undefined)?.entries;
  const names = new Set<string>();
  if (Array.isArray(entries)) for (const e of entries) if (typeof (e as { file?: unknown })?.file === 'string') names.add((e as { file: string }).file);
  return names;
}

/**
 * Keep the part and correlation files a checkpoint lists and the ledger files holding its
 * examples (refusing if a part is missing; the ledger files are checked as they are read);
 * remove the rest.
 */
function keepListedParts(dir: string, ck: Checkpoint, ledgerFiles: LedgerFileRange[], file: string): void {
  const keep = new Set([CHECKPOINT_FILE, ...listedCorrelationFiles(ck), ...ledgerFiles.map((f) => f.file)]);
  for (let k = 0; k < ck.parts; k++) {
    const part = `predictions-${k}.parquet`;
    if (!existsSync(path.join(dir, part))) throw new QuantlensError('STATE', `checkpoint lists ${part}, which is missing; ${START_OVER}`, file);
    keep.add(part);
  }
  // Parts and ledger files written after the checkpoint was, and temporaries of the killed process.
  for (const name of readdirSync(dir)) if (!keep.has(name)) rmSync(path.join(dir, name), { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// A finished shard's state.json.

export interface ShardState {
  format: string;
  configHash: string;
  shard: { index: number; count: number };
  /** The plan's Parquet metadata; 'quantlens.pipeline' holds the pipeline config. */
  metadata: Record<string, string>;
  plan: {
    modelDir: string;
    /** The run's output folder (the metadata's pipeline records paths relative to it). */
    output?: string;
    modelHash: string;
    demoLabel: string | null;
    datasetPath: string;
    sites: ActivationSite[];
    precisions: PrecisionInfo[];
    /** The runners' JSON-able fields (no session): the summary reads some of them. */
    runners: Record<string, unknown>[];
  };
  states: MeasureStates;
  ledger: LedgerState;
  stats: TokenizeStats;
}

/** Written last, so a shard folder with state.json is a complete shard. */
export async function writeShardState(
  outDir: string,
  plan: Plan,
  shard: { index: number; count: number },
  states: MeasureStates,
  ledger: LedgerState,
  stats: TokenizeStats,
): Promise<void> {
  const s: ShardState = {
    format: SHARD_STATE_FORMAT,
    configHash: configHash(plan),
    shard,
    metadata: plan.metadata,
    plan: {
      modelDir: plan.folder.dir,
      output: plan.cfg.output,
      modelHash: plan.modelHash,
      demoLabel: plan.demoLabel,
      datasetPath: plan.dataset.path,
      sites: plan.sites,
      precisions: plan.precisions,
      runners: plan.runners.map(({ session: _session, plan: _inputs, ...rest }) => rest),
    },
    states,
    ledger,
    stats: { ...stats },
  };
  await writeFileAtomically(path.join(outDir, SHARD_STATE_FILE), JSON.stringify(s));
}
