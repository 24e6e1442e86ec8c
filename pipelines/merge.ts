/**
 * `quantlens merge <shard dirs..>`: the outputs of one run from the shards of `run --shard i/n`.
 *
 * Each finished shard folder holds state.json (pipelines/checkpoint.ts): estimator states,
 * tallies, token counts, and the id and token length of every example it ran. Merge checks the
 * shards belong together (same config hash, one of each index 0 … n-1), merges the states
 * (RunMeasures.merge, exact Chan updates), and writes predictions.parquet in the row order the
 * single run would have written: batching depends only on the token lengths in file order, so the
 * single run's batch sequence is recomputed (cutWindow) from the ledgers. Then it finishes through
 * the same path as a run (finishRun): estimator tables, calibration, summary.json, report.
 * The model is not opened; everything needed is in the states.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { cutWindow } from '../operators/batch.ts';
import type { TokenizedExample } from '../core/types.ts';
import type { TokenizeStats } from '../operators/encode.ts';
import type { PipelineConfig } from './schema.ts';
import type { Plan } from './plan.ts';
import { RunMeasures } from './measures.ts';
import { finishRun, type RunResult } from './run.ts';
import { SHARD_STATE_FILE, SHARD_STATE_FORMAT, readPredictionRows, writePredictionRows, type ShardState } from './checkpoint.ts';
import { decodeI32 } from './ledger.ts';
import { StateChecker } from './state-check.ts';
import { abortOutput, beginOutput, checkOutputComplete, endOutput } from './output-folder.ts';
import { removePendingTemporaries } from '../core/atomic-write.ts';

export interface MergeOptions {
  /** Output folder; default the pipeline's `output` (the folder the shard folders sit in). */
  output?: string;
  /** Write report.html (default true). */
  report?: boolean;
  log?: (line: string) => void;
  /** Called with the output folder once the shard set is checked, before anything is written (the CLI refuses finished folders). */
  beforeWrite?: (outDir: string) => void;
}

export interface LoadedShard {
  dir: string;
  state: ShardState;
}

export function readShardState(dir: string): ShardState {
  const file = path.join(dir, SHARD_STATE_FILE);
  if (!existsSync(file)) throw new QuantlensError('STATE', `no ${SHARD_STATE_FILE}: not a finished shard folder (run with --shard i/n writes one at the end)`, dir);
  checkOutputComplete(dir);
  let s: ShardState;
  try {
    s = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new QuantlensError('STATE', `${SHARD_STATE_FILE} is not valid JSON: ${(e as Error).message}`, dir);
  }
  if (s?.format !== SHARD_STATE_FORMAT) throw new QuantlensError('STATE', `${SHARD_STATE_FILE} is not a quantlens shard state (format ${String(s?.format)})`, dir);
  checkShardFields(s, file);
  if (!existsSync(path.join(dir, 'predictions.parquet'))) throw new QuantlensError('STATE', 'shard folder has state.json but no predictions.parquet', dir);
  return s;
}

/** Every field merge reads, checked before use (the estimator states when they are merged). */
function checkShardFields(s: ShardState, file: string): void {
  const c = new StateChecker(file);
  c.string(s.configHash, 'configHash');
  const shard = c.object(s.shard, 'shard');
  const count = c.count(shard.count, 'shard.count');
  if (count < 1) c.fail('shard.count', 'is 0');
  c.count(shard.index, 'shard.index', count - 1);
  const meta = c.object(s.metadata, 'metadata');
  let cfg: PipelineConfig;
  try {
    cfg = JSON.parse(c.string(meta['quantlens.pipeline'], 'metadata.quantlens.pipeline'));
  } catch (e) {
    if (e instanceof QuantlensError) throw e;
    c.fail('metadata.quantlens.pipeline', 'is not JSON');
  }
  const cf = c.object(cfg!, 'metadata.quantlens.pipeline');
  const precisions = c.array(cf.precisions, 'metadata.quantlens.pipeline.precisions');
  if (!precisions.length || precisions.some((p) => typeof p !== 'string')) c.fail('metadata.quantlens.pipeline.precisions', 'is not a list of precision names');
  c.array(cf.measure, 'metadata.quantlens.pipeline.measure');
  const batch = c.object(cf.batch, 'metadata.quantlens.pipeline.batch');
  for (const k of ['max_tokens', 'max_examples', 'window']) if (c.count(batch[k], `metadata.quantlens.pipeline.batch.${k}`) < 1) c.fail(`metadata.quantlens.pipeline.batch.${k}`, 'is 0');
  const plan = c.object(s.plan, 'plan');
  c.string(plan.modelDir, 'plan.modelDir');
  c.string(plan.modelHash, 'plan.modelHash');
  c.array(plan.sites, 'plan.sites');
  c.array(plan.precisions, 'plan.precisions');
  c.object(s.states, 'states');
  c.ledger(s.ledger, precisions as string[]);
  const stats = c.object(s.stats, 'stats');
  for (const k of ['examples', 'truncated', 'tokens']) c.count(stats[k], `stats.${k}`);
}

/** Refuse shards from different pipelines/models, duplicates and incomplete sets; returns them by index. */
export function checkShardSet(shards: LoadedShard[]): LoadedShard[] {
  if (shards.length === 0) throw new QuantlensError('STATE', 'no shard folders given');
  const first = shards[0];
  const count = first.state.shard.count;
  const byIndex = new Map<number, LoadedShard>();
  for (const s of shards) {
    if (s.state.configHash !== first.state.configHash)
      throw new QuantlensError('STATE', `shard comes from a different pipeline or model than ${first.dir} (config hash ${s.state.configHash.slice(0, 12)} ≠ ${first.state.configHash.slice(0, 12)})`, s.dir);
    if (s.state.shard.count !== count) throw new QuantlensError('STATE', `shard is ${s.state.shard.index}/${s.state.shard.count} but ${first.dir} is one of ${count}`, s.dir);
    const dup = byIndex.get(s.state.shard.index);
    if (dup) throw new QuantlensError('STATE', `duplicate shard ${s.state.shard.index}/${count}: also given as ${dup.dir}`, s.dir);
    byIndex.set(s.state.shard.index, s);
  }
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length) {
    const parent = path.dirname(first.dir);
    throw new QuantlensError('STATE', `incomplete shard set: missing ${missing.map((i) => `shard-${i}-of-${count}`).join(', ')}`, parent);
  }
  return [...byIndex.keys()].sort((a, b) => a - b).map((i) => byIndex.get(i)!);
}

/**
 * The single run's batches as example-id lists: examples in file order (example_id order),
 * cut into windows of batch.window and each window into batches exactly as batchByTokens does.
 */
export function singleRunBatches(examples: { id: number; length: number }[], batch: PipelineConfig['batch']): { batches: number[][]; padded: number } {
  const sorted = [...examples].sort((a, b) => a.id - b.id);
  const out: number[][] = [];
  let padded = 0;
  for (let start = 0; start < sorted.length; start += batch.window) {
    // cutWindow reads only example_id and ids.length.
    const window: TokenizedExample[] = sorted.slice(start, start + batch.window).map((e) => ({ example_id: e.id, ids: new Int32Array(e.length), gold: '', truncated: false, fields: {} }));
    for (const b of cutWindow(window, { maxTokens: batch.max_tokens, maxExamples: batch.max_examples, window: batch.window }, out.length)) {
      out.push(b.examples.map((e) => e.example_id));
      padded += b.paddedTokens;
    }
  }
  return { batches: out, padded };
}

/** A Plan with what finishing needs (no sessions, no tokenizer): merge never runs inference. */
function planFromState(s: ShardState): Plan {
  const p = s.plan;
  // The metadata's pipeline records paths relative to the output folder; the state has them absolute.
  const cfg = { ...JSON.parse(s.metadata['quantlens.pipeline']), file: '', model: p.modelDir } as PipelineConfig;
  if (p.output) cfg.output = p.output;
  return {
    cfg,
    folder: { dir: p.modelDir },
    modelHash: p.modelHash,
    demoLabel: p.demoLabel,
    dataset: { ...cfg.dataset, path: p.datasetPath, shard: undefined },
    sites: p.sites,
    precisions: p.precisions,
    runners: p.runners ?? [],
    metadata: s.metadata,
  } as unknown as Plan;
}

export async function mergeShards(dirs: string[], opts: MergeOptions = {}): Promise<RunResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const t0 = performance.now();
  const shards = checkShardSet(dirs.map((d) => path.resolve(d)).map((dir) => ({ dir, state: readShardState(dir) })));
  const plan = planFromState(shards[0].state);
  const { cfg } = plan;
  const outDir = path.resolve(opts.output ?? cfg.output);
  opts.beforeWrite?.(outDir);
  await mkdir(outDir, { recursive: true });
  log(`quantlens: merging ${shards.length} shards of ${cfg.name} → ${outDir}`);
  await beginOutput(outDir);
  try {
    const summary = await mergeInto(outDir, plan, shards, opts);
    await endOutput(outDir);
    log(`quantlens: merged ${shards.length} shards, ${summary.dataset.examples} examples in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${outDir}`);
    return { outDir, summary };
  } catch (e) {
    removePendingTemporaries();
    abortOutput(outDir, false);
    throw e;
  }
}

/** The merged outputs, written into `outDir` (marked incomplete by the caller). */
async function mergeInto(outDir: string, plan: Plan, shards: LoadedShard[], opts: MergeOptions): Promise<Record<string, any>> {
  const { cfg } = plan;

  // The scoring is never used: merge calls no update().
  const measures = new RunMeasures(plan, outDir, { mode: 'loglik' });
  // Co-moments are folded key by key at finish, straight from the shards' binary files: one key in memory at a time.
  measures.correlation?.deferMerges();
  const stats: TokenizeStats = { examples: 0, truncated: 0, tokens: 0 };
  const tokens = { padded: 0, real: 0 };
  let seconds = 0;
  const examples: { id: number; length: number }[] = [];
  for (const { dir, state: s } of shards) {
    const file = path.join(dir, SHARD_STATE_FILE);
    new StateChecker(file).mergeStates(s.states, cfg, measures, plan.sites.length);
    for (const [precision, t] of Object.entries(s.ledger.tally)) {
      const mine = measures.tally.get(precision)!;
      mine.examples += t.examples;
      mine.tokens += t.tokens;
      mine.truncated += t.truncated;
      mine.inference_seconds += t.inference_seconds;
      // Absent in shard states written before these fields existed.
      mine.loglik_seconds += t.loglik_seconds ?? 0;
      mine.attribution_seconds += t.attribution_seconds ?? 0;
    }
    stats.examples += s.stats.examples;
    stats.truncated += s.stats.truncated;
    stats.tokens += s.stats.tokens;
    tokens.padded += s.ledger.tokens.padded;
    tokens.real += s.ledger.tokens.real;
    seconds += s.ledger.seconds;
    const ids = decodeI32(s.ledger.examples.ids, 'examples.ids', file);
    const lengths = decodeI32(s.ledger.examples.lengths, 'examples.lengths', file);
    for (let i = 0; i < ids.length; i++) examples.push({ id: ids[i], length: lengths[i] });
  }

  // predictions.parquet in the single run's order: per batch, each precision's rows in batch order.
  const rows = new Map<string, Record<string, unknown>>();
  for (const { dir } of shards) {
    for (const r of await readPredictionRows(path.join(dir, 'predictions.parquet'))) {
      const key = `${r.precision}\u0000${r.example_id}`;
      if (rows.has(key)) throw new QuantlensError('STATE', `example ${r.example_id} (${r.precision}) appears in two shards`, dir);
      rows.set(key, r);
    }
  }
  // Padding as the single run would have had it (summary.padding_efficiency), not the shards' own.
  const { batches, padded } = singleRunBatches(examples, cfg.batch);
  tokens.padded = padded;
  function* ordered() {
    for (const ids of batches)
      for (const precision of cfg.precisions)
        for (const id of ids) {
          const key = `${precision}\u0000${id}`;
          const r = rows.get(key);
          if (!r) throw new QuantlensError('STATE', `no prediction of example ${id} at ${precision} in any shard's predictions.parquet`, outDir);
          rows.delete(key);
          yield r;
        }
  }
  await writePredictionRows(path.join(outDir, 'predictions.parquet'), plan.metadata, ordered());
  if (rows.size) throw new QuantlensError('STATE', `${rows.size} prediction rows belong to no example of the shards' ledgers`, outDir);

  const timing = { seconds, tokensPerSecond: tokens.real / Math.max(seconds, 1e-9) };
  return finishRun(plan, measures, outDir, { stats, timing, tokens, report: opts.report });
}
