/**
 * The run ledger: counters a run keeps beside its estimators (per-precision tallies, token counts,
 * wall seconds) and the id and token length of every example consumed, in batch order (merge
 * rebuilds the single run's batch order from them; salience's `after` pass selects by them).
 *
 * A shard's state.json is written once, so it holds the examples inline (base64 int32). A
 * checkpoint is written every `checkpoint_every` batches, so inline arrays would make each one
 * O(examples so far) and a run's checkpoints O(n²): instead each checkpoint appends one binary
 * file (state/ledger-<from>-<to>.i32: the ids then the lengths of examples [from, to), raw
 * little-endian int32) holding only the examples recorded since the previous checkpoint, and
 * checkpoint.json lists the files with their counts, byte lengths and SHA-256. A listed file is
 * never rewritten; one written but not yet listed (a kill before checkpoint.json's rename) is
 * removed by the next resume, like the other unlisted files of the state folder.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { writeFileAtomically } from '../core/atomic-write.ts';
import { requireLittleEndian } from '../core/byte-order.ts';
import { GrowableArray } from '../core/growable-array.ts';
import type { Batch } from '../core/types.ts';
import type { PrecisionTally } from './measures.ts';
import { decodeI32 as decodeInt32, encodeTyped } from '../operators/estimators/state-codec.ts';

/** The counters, shared by both forms of the ledger. */
interface LedgerCounters {
  tally: Record<string, PrecisionTally>;
  tokens: { padded: number; real: number };
  /** Wall seconds spent so far (over every resumed session). */
  seconds: number;
}

/** A shard state's ledger: the examples inline. */
export interface LedgerState extends LedgerCounters {
  /** base64 int32 arrays: example ids and token lengths, in the order their batches were consumed. */
  examples: { ids: string; lengths: string };
}

/** One checkpoint's share of the examples: a file in the state folder. */
export interface LedgerFile {
  file: string;
  /** Examples in the file: `count` ids, then `count` lengths. */
  count: number;
  bytes: number;
  sha256: string;
}

/** A checkpoint's ledger: the examples in the listed files, concatenated in order. */
export interface CheckpointLedger extends LedgerCounters {
  examples: { count: number; files: LedgerFile[] };
}

/** What a ledger file may be called (a name from checkpoint.json must not point outside the state folder). */
export const LEDGER_FILE = /^ledger-\d+-\d+\.i32$/;

/** The estimator states' codec (state-codec.ts), with the error naming the state file. */
export function decodeI32(s: string, what: string, file?: string): Int32Array {
  try {
    return decodeInt32(s, undefined, what);
  } catch {
    throw new QuantlensError('STATE', `state field ${what} is not base64 int32`, file);
  }
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export class RunLedger {
  padded = 0;
  real = 0;
  /** Seconds of earlier sessions of a resumed run. */
  priorSeconds = 0;
  private readonly t0 = performance.now();
  // Two int32 per example (8 bytes): merge needs them to rebuild the single run's batch order.
  private ids = new GrowableArray(Int32Array);
  private lengths = new GrowableArray(Int32Array);
  /** The ledger files written so far; together they hold examples [0, filed). */
  private files: LedgerFile[] = [];
  private filed = 0;

  record(batch: Batch): void {
    this.padded += batch.paddedTokens;
    this.real += batch.realTokens;
    for (const e of batch.examples) {
      this.ids.push(e.example_id);
      this.lengths.push(e.ids.length);
    }
  }

  /** Example ids of every batch consumed so far, in order (a resumed run's included). */
  exampleIds(): Int32Array {
    return this.ids.view();
  }

  seconds(): number {
    return this.priorSeconds + (performance.now() - this.t0) / 1000;
  }

  private counters(tally: Map<string, PrecisionTally>): LedgerCounters {
    return {
      tally: Object.fromEntries([...tally].map(([k, t]) => [k, { ...t }])),
      tokens: { padded: this.padded, real: this.real },
      seconds: this.seconds(),
    };
  }

  /** The whole ledger inline (a shard's state.json, written once). */
  state(tally: Map<string, PrecisionTally>): LedgerState {
    return { ...this.counters(tally), examples: { ids: encodeTyped(this.ids.view()), lengths: encodeTyped(this.lengths.view()) } };
  }

  /**
   * For a checkpoint: write the examples recorded since the last call as one file in `dir` and
   * return the ledger listing every file so far. The file is booked at once: if the checkpoint
   * naming it is never renamed into place, the run has failed, and its resume removes the file.
   */
  async checkpointState(dir: string, tally: Map<string, PrecisionTally>): Promise<CheckpointLedger> {
    const n = this.ids.length;
    if (n > this.filed) {
      requireLittleEndian('checkpoint ledger files');
      const values = new Int32Array(2 * (n - this.filed));
      values.set(this.ids.view().subarray(this.filed));
      values.set(this.lengths.view().subarray(this.filed), n - this.filed);
      const bytes = new Uint8Array(values.buffer);
      const file = `ledger-${this.filed}-${n}.i32`;
      await writeFileAtomically(path.join(dir, file), bytes);
      this.files.push({ file, count: n - this.filed, bytes: bytes.byteLength, sha256: sha256(bytes) });
      this.filed = n;
    }
    return { ...this.counters(tally), examples: { count: n, files: this.files.map((f) => ({ ...f })) } };
  }

  /**
   * Load a checkpoint's ledger (checked by StateChecker.checkpointLedger) into this fresh one and
   * into the measures' tallies; its files are read from `dir`, each checked against its listing.
   */
  restore(s: CheckpointLedger, dir: string, tally: Map<string, PrecisionTally>, file: string): void {
    this.padded = s.tokens.padded;
    this.real = s.tokens.real;
    this.priorSeconds = s.seconds;
    this.ids = new GrowableArray(Int32Array, s.examples.count);
    this.lengths = new GrowableArray(Int32Array, s.examples.count);
    for (const f of s.examples.files) {
      const values = readLedgerFile(path.join(dir, f.file), f, path.basename(file));
      this.ids.pushAll(values.subarray(0, f.count));
      this.lengths.pushAll(values.subarray(f.count));
    }
    this.files = s.examples.files.map((f) => ({ ...f }));
    this.filed = s.examples.count;
    for (const [k, t] of Object.entries(s.tally)) {
      const mine = tally.get(k);
      if (!mine) throw new QuantlensError('STATE', `checkpoint has precision ${k}, which this run does not`, file);
      Object.assign(mine, t);
    }
  }
}

/** A listed ledger file's values (ids, then lengths), or one error naming it. */
function readLedgerFile(p: string, f: LedgerFile, listedBy: string): Int32Array {
  const refuse = (what: string): never => {
    throw new QuantlensError('STATE', `ledger file ${what} (${listedBy} lists ${f.count} examples, ${f.bytes} bytes); run without --resume to start over`, p);
  };
  if (!existsSync(p)) refuse('is missing');
  const size = statSync(p).size;
  if (size !== f.bytes) refuse(`has ${size} bytes, ${size < f.bytes ? 'truncated' : 'too long'}`);
  requireLittleEndian('checkpoint ledger files');
  const bytes = readFileSync(p);
  if (sha256(bytes) !== f.sha256) refuse('does not match its SHA-256 (changed since the checkpoint)');
  // A copy into an aligned buffer: a Buffer's offset in Node's pool need not be a multiple of 4.
  return new Int32Array(new Uint8Array(bytes).buffer);
}

/** Wall time of a run that may have been resumed: earlier sessions count. */
export function runTiming(ledger: RunLedger): { seconds: number; tokensPerSecond: number } {
  const seconds = ledger.seconds();
  return { seconds, tokensPerSecond: ledger.real / Math.max(seconds, 1e-9) };
}
