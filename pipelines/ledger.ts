/**
 * The run ledger: counters a run keeps beside its estimators (per-precision tallies, token counts,
 * wall seconds) and the id and token length of every example consumed, in batch order (merge
 * rebuilds the single run's batch order from them; salience's `after` pass selects by them).
 *
 * A shard's state.json is written once, so it holds the examples inline (base64 int32). A
 * checkpoint is written every `checkpoint_every` batches, so inline arrays would make each one
 * O(examples so far) and a run's checkpoints O(n²): instead each checkpoint appends one binary
 * file (state/ledger-<from>-<to>.i32) holding only the examples recorded since the previous
 * checkpoint, and checkpoint.json records how many files and examples there are and the end of
 * a SHA-256 chain through them (pipelines/ledger-chain.ts), so it does not grow with the run
 * either. A recorded file is never rewritten; one written but not yet recorded (a kill before
 * checkpoint.json's rename) is removed by the next resume, like the other stray files of the
 * state folder.
 */
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { writeFileAtomically } from '../core/atomic-write.ts';
import { requireLittleEndian } from '../core/byte-order.ts';
import { GrowableArray } from '../core/growable-array.ts';
import type { Batch } from '../core/types.ts';
import type { PrecisionTally } from './measures.ts';
import { decodeI32 as decodeInt32, encodeTyped } from '../operators/estimators/state-codec.ts';
import { CHAIN_START, chainLink, ledgerFileContents, ledgerFileName, readLedgerChain, type LedgerFileRange } from './ledger-chain.ts';

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

/**
 * A checkpoint's ledger: its examples are in `files` files of the state folder tiling
 * [0, count), whose SHA-256 chain ends in `chain` (hex).
 */
export interface CheckpointLedger extends LedgerCounters {
  examples: { count: number; files: number; chain: string };
}

/** The estimator states' codec (state-codec.ts), with the error naming the state file. */
export function decodeI32(s: string, what: string, file?: string): Int32Array {
  try {
    return decodeInt32(s, undefined, what);
  } catch {
    throw new QuantlensError('STATE', `state field ${what} is not base64 int32`, file);
  }
}

export class RunLedger {
  padded = 0;
  real = 0;
  /** Seconds of earlier sessions of a resumed run. */
  priorSeconds = 0;
  private readonly t0 = performance.now();
  // Two int32 per example (8 bytes): merge needs them to rebuild the single run's batch order.
  private ids = new GrowableArray(Int32Array);
  private lengths = new GrowableArray(Int32Array);
  /** The ledger files written so far (`files`) hold examples [0, filed); their chain ends in `chain`. */
  private files = 0;
  private filed = 0;
  private chain = CHAIN_START;

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
   * return the ledger recording it. The file is booked at once: if the checkpoint recording it
   * is never renamed into place, the run has failed, and its resume removes the file.
   */
  async checkpointState(dir: string, tally: Map<string, PrecisionTally>): Promise<CheckpointLedger> {
    const n = this.ids.length;
    if (n > this.filed) {
      requireLittleEndian('checkpoint ledger files');
      const values = new Int32Array(2 * (n - this.filed));
      values.set(this.ids.view().subarray(this.filed));
      values.set(this.lengths.view().subarray(this.filed), n - this.filed);
      const bytes = new Uint8Array(values.buffer);
      const link = chainLink(this.chain, bytes, this.filed, n);
      await writeFileAtomically(path.join(dir, ledgerFileName(this.filed, n)), ledgerFileContents(bytes, link));
      this.files++;
      this.filed = n;
      this.chain = link;
    }
    return { ...this.counters(tally), examples: { count: n, files: this.files, chain: this.chain.toString('hex') } };
  }

  /**
   * Load a checkpoint's ledger (checked by StateChecker.checkpointLedger) into this fresh one and
   * into the measures' tallies; `tiles` are its files in `dir` (findLedgerFiles), each checked
   * against the chain as it is read.
   */
  restore(s: CheckpointLedger, dir: string, tiles: LedgerFileRange[], tally: Map<string, PrecisionTally>, file: string): void {
    this.padded = s.tokens.padded;
    this.real = s.tokens.real;
    this.priorSeconds = s.seconds;
    this.ids = new GrowableArray(Int32Array, s.examples.count);
    this.lengths = new GrowableArray(Int32Array, s.examples.count);
    requireLittleEndian('checkpoint ledger files');
    this.chain = readLedgerChain(dir, tiles, s.examples.chain, path.basename(file), (values, count) => {
      this.ids.pushAll(values.subarray(0, count));
      this.lengths.pushAll(values.subarray(count));
    });
    this.files = s.examples.files;
    this.filed = s.examples.count;
    for (const [k, t] of Object.entries(s.tally)) {
      const mine = tally.get(k);
      if (!mine) throw new QuantlensError('STATE', `checkpoint has precision ${k}, which this run does not`, file);
      Object.assign(mine, t);
    }
  }
}

/** Wall time of a run that may have been resumed: earlier sessions count. */
export function runTiming(ledger: RunLedger): { seconds: number; tokensPerSecond: number } {
  const seconds = ledger.seconds();
  return { seconds, tokensPerSecond: ledger.real / Math.max(seconds, 1e-9) };
}
