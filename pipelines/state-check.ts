/**
 * Validation of what resume and merge continue from. A checkpoint or shard state is a JSON file
 * a user can edit, truncate or copy from elsewhere; every field is checked before it is used, and
 * anything wrong is one STATE error naming the file and the field, never a JS TypeError.
 */
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import type { PipelineConfig } from './schema.ts';
import type { RunMeasures, MeasureStates } from './measures.ts';

export class StateChecker {
  constructor(
    /** The state file, named in every message. */
    readonly file: string,
  ) {}

  fail(field: string, msg: string): never {
    throw new QuantlensError('STATE', `${field} ${msg}; the state is corrupt or from another version`, this.file);
  }

  object(v: unknown, field: string): Record<string, unknown> {
    if (!v || typeof v !== 'object' || Array.isArray(v)) this.fail(field, 'is missing or not an object');
    return v as Record<string, unknown>;
  }

  string(v: unknown, field: string): string {
    if (typeof v !== 'string' || v === '') this.fail(field, 'is missing or not a string');
    return v as string;
  }

  /** A non-negative integer (counts, batches, indices). */
  count(v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) this.fail(field, `is ${JSON.stringify(v)}, not an integer in [0, ${max}]`);
    return v as number;
  }

  /** A finite non-negative number (seconds). */
  seconds(v: unknown, field: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) this.fail(field, `is ${JSON.stringify(v)}, not a non-negative number`);
    return v as number;
  }

  array(v: unknown, field: string): unknown[] {
    if (!Array.isArray(v)) this.fail(field, 'is missing or not a list');
    return v as unknown[];
  }

  /** base64 of int32 values; returns the number of values. */
  int32s(v: unknown, field: string): number {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) this.fail(field, 'is not base64 int32');
    const bytes = Buffer.byteLength(v as string, 'base64');
    if (bytes % 4 !== 0) this.fail(field, `has ${bytes} bytes, not a multiple of 4 (int32)`);
    return bytes / 4;
  }

  /** The ledger's counters (pipelines/ledger.ts) of a run over `precisions`; returns its object and each precision's example count. */
  private ledgerCounters(v: unknown, precisions: string[], field: string): { l: Record<string, unknown>; examples: number[] } {
    const l = this.object(v, field);
    const tally = this.object(l.tally, `${field}.tally`);
    for (const k of Object.keys(tally)) if (!precisions.includes(k)) this.fail(`${field}.tally.${k}`, `is a precision this run does not have (${precisions.join(', ')})`);
    const examples: number[] = [];
    for (const p of precisions) {
      const t = this.object(tally[p], `${field}.tally.${p}`);
      examples.push(this.count(t.examples, `${field}.tally.${p}.examples`));
      this.count(t.tokens, `${field}.tally.${p}.tokens`);
      this.count(t.truncated, `${field}.tally.${p}.truncated`);
      this.seconds(t.inference_seconds, `${field}.tally.${p}.inference_seconds`);
    }
    const tokens = this.object(l.tokens, `${field}.tokens`);
    this.count(tokens.padded, `${field}.tokens.padded`);
    this.count(tokens.real, `${field}.tokens.real`);
    this.seconds(l.seconds, `${field}.seconds`);
    return { l, examples };
  }

  /** Each precision's tally counts the examples the ledger lists. */
  private tallyMatches(examples: number[], listed: number, precisions: string[], field: string): void {
    for (const [i, n] of examples.entries())
      if (n !== listed) this.fail(`${field}.tally.${precisions[i]}.examples`, `is ${n}, but the ledger lists ${listed} examples`);
  }

  /** A shard state's ledger (LedgerState: the examples inline). */
  ledger(v: unknown, precisions: string[], field = 'ledger'): void {
    const { l, examples } = this.ledgerCounters(v, precisions, field);
    const ex = this.object(l.examples, `${field}.examples`);
    const ids = this.int32s(ex.ids, `${field}.examples.ids`);
    const lengths = this.int32s(ex.lengths, `${field}.examples.lengths`);
    if (ids !== lengths) this.fail(`${field}.examples`, `has ${ids} ids but ${lengths} lengths`);
    this.tallyMatches(examples, ids, precisions, field);
  }

  /** A checkpoint's ledger (CheckpointLedger: the examples in ledger files, found and checked against the chain as they are read). */
  checkpointLedger(v: unknown, precisions: string[], field = 'ledger'): void {
    const { l, examples } = this.ledgerCounters(v, precisions, field);
    const ex = this.object(l.examples, `${field}.examples`);
    const count = this.count(ex.count, `${field}.examples.count`);
    // Each file holds at least one example, and examples need a file.
    const files = this.count(ex.files, `${field}.examples.files`, count);
    if (count > 0 && files === 0) this.fail(`${field}.examples.files`, `is 0, but the ledger has ${count} examples`);
    if (typeof ex.chain !== 'string' || !/^[0-9a-f]{64}$/.test(ex.chain)) this.fail(`${field}.examples.chain`, 'is missing or not a SHA-256 in hex');
    this.tallyMatches(examples, count, precisions, field);
  }

  /** Co-moment entries plus keys finished by earlier passes (a finished key of a shard is both): `expected` keys. */
  correlationEntries(c: Record<string, unknown>, expected: number, field: string): void {
    const entries = this.array(c.entries, `${field}.entries`);
    const finished = c.finished === undefined ? [] : this.array(c.finished, `${field}.finished`);
    const keys = new Set<string>();
    for (const [i, e] of [...entries, ...finished.map((f) => (f as { key?: unknown })?.key)].entries()) {
      const o = this.object(e, i < entries.length ? `${field}.entries[${i}]` : `${field}.finished[${i - entries.length}].key`);
      keys.add(JSON.stringify([o.precision, o.layer, o.tensor]));
    }
    if (keys.size !== expected) this.fail(`${field}.entries`, `has ${keys.size} entries, expected ${expected}`);
  }

  entryCount(v: unknown, expected: number, field: string): void {
    const n = this.array(v, field).length;
    if (n !== expected) this.fail(field, `has ${n} entries, expected ${expected}`);
  }

  /** One moments entry per precision and captured site: a state with entries missing would resume silently short. */
  neuronEntries(v: unknown, precisions: string[], sites: number, field: string): void {
    const entries = this.array(this.object(v, field).entries, `${field}.entries`);
    if (entries.length !== precisions.length * sites) this.fail(`${field}.entries`, `has ${entries.length} entries, expected ${precisions.length * sites} (precisions × layers)`);
    for (const [i, e] of entries.entries()) {
      const o = this.object(e, `${field}.entries[${i}]`);
      if (!precisions.includes(o.precision as string)) this.fail(`${field}.entries[${i}].precision`, `is ${JSON.stringify(o.precision)}, not a precision of this run`);
      const m = this.object(o.moments, `${field}.entries[${i}].moments`);
      this.count(m.width, `${field}.entries[${i}].moments.width`);
      this.count(m.count, `${field}.entries[${i}].moments.count`);
    }
  }

  /**
   * Estimator states: one per estimator the pipeline runs, merged with every error named; their
   * binary files are beside the state file. `correlationKeys`: the correlation keys the state must
   * hold (accumulated or finished); default every precision × layer.
   */
  mergeStates(v: unknown, cfg: PipelineConfig, measures: RunMeasures, sites: number, field = 'states', correlationKeys = cfg.precisions.length * sites): void {
    const s = this.object(v, field) as MeasureStates;
    const m = new Set(cfg.measure);
    // Which estimators exist mirrors RunMeasures' constructor.
    const expected = [
      ['neurons', m.has('neurons') || m.has('dead') || m.has('agreement')],
      ['correlation', m.has('correlation')],
      ['agreement', m.has('agreement')],
      ['salience', m.has('salience')],
    ] as const;
    for (const [k, needed] of expected) if (needed) this.object((s as Record<string, unknown>)[k], `${field}.${k}`);
    if (s.neurons) this.neuronEntries(s.neurons, cfg.precisions, sites, `${field}.neurons`);
    // One co-moment entry per precision and layer, one agreement row per compared precision: fewer would resume silently short.
    if (s.correlation) this.correlationEntries(this.object(s.correlation, `${field}.correlation`), correlationKeys, `${field}.correlation`);
    if (s.agreement) this.entryCount(this.object(s.agreement, `${field}.agreement`).outputs, cfg.precisions.length - 1, `${field}.agreement.outputs`);
    try {
      measures.merge(s, path.dirname(this.file));
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      throw new QuantlensError('STATE', `${field}: estimator states cannot be merged (${msg.split('\n')[0]}); the state is corrupt or from another version`, this.file, { cause: e });
    }
  }
}
