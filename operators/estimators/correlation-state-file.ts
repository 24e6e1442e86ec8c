/**
 * Binary co-moment state files, for checkpoints, shards and merge. A key's state at d_ff 18,944 is
 * 1.4 GB of float64; as base64 inside JSON it would be 1.9 GB of string held twice. These files
 * are raw little-endian float64, written and read in slices straight from and into the
 * accumulators' own arrays (no copy of a whole key), under a temporary name renamed when complete.
 *
 * Layout: the 8 ASCII bytes `QLCOMOM1`, then per entry, at the byte offset its JSON descriptor
 * gives: mean [d], min [d], max [d], the packed upper triangle of C = Σ(x−mean)(x−mean)ᵀ
 * [d(d+1)/2] row by row. Counts, keys and offsets live in the JSON descriptor that names the file.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import { writeAtomically } from '../../core/atomic-write.ts';
import { requireLittleEndian } from '../../core/byte-order.ts';

export const COMOMENT_MAGIC = 'QLCOMOM1';
const HEADER_BYTES = 8;
/** Slice of a write or read: bounded memory, large enough for sequential disk throughput. */
const SLICE_BYTES = 1 << 23;

/** The arrays of one key, as the accumulator holds them (CoMoments in correlation.ts). */
export interface CoMomentArrays {
  width: number;
  mean: Float64Array;
  min: Float64Array;
  max: Float64Array;
  upper: Float64Array;
}

/** Bytes of one entry of width d: 3d + d(d+1)/2 float64. */
export function entryBytes(width: number): number {
  return (3 * width + (width * (width + 1)) / 2) * 8;
}

const bytesOf = (a: Float64Array, from = 0, to = a.length) => new Uint8Array(a.buffer, a.byteOffset + from * 8, (to - from) * 8);

/** Writes `entries` into `finalPath` atomically; returns each entry's byte offset. */
export async function writeCoMomentFile(finalPath: string, entries: CoMomentArrays[]): Promise<number[]> {
  requireLittleEndian('correlation state files');
  const offsets: number[] = [];
  await writeAtomically(finalPath, async (tmp) => {
    const fh = await fsp.open(tmp, 'w');
    try {
      let pos = 0;
      const put = async (b: Uint8Array) => {
        for (let off = 0; off < b.byteLength; ) {
          const { bytesWritten } = await fh.write(b, off, Math.min(SLICE_BYTES, b.byteLength - off), pos);
          off += bytesWritten;
          pos += bytesWritten;
        }
      };
      await put(Buffer.from(COMOMENT_MAGIC, 'ascii'));
      for (const e of entries) {
        offsets.push(pos);
        for (const a of [e.mean, e.min, e.max, e.upper]) await put(bytesOf(a));
      }
    } finally {
      await fh.close();
    }
  });
  return offsets;
}

/** An open state file, checked for its magic; reads are synchronous slices at absolute offsets. */
export class CoMomentReader {
  private readonly fd: number;
  readonly size: number;

  constructor(readonly file: string) {
    requireLittleEndian('correlation state files');
    try {
      this.fd = openSync(file, 'r');
    } catch (e) {
      throw new QuantlensError('STATE', `cannot read the correlation state file ${path.basename(file)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file, { cause: e });
    }
    this.size = fstatSync(this.fd).size;
    const magic = Buffer.alloc(HEADER_BYTES);
    if (this.size < HEADER_BYTES || readSync(this.fd, magic, 0, HEADER_BYTES, 0) !== HEADER_BYTES || magic.toString('ascii') !== COMOMENT_MAGIC) {
      this.close();
      throw new QuantlensError('STATE', `not a quantlens correlation state file (no ${COMOMENT_MAGIC} header)`, file);
    }
  }

  /** Refuses an entry that does not lie wholly inside the file (a truncated or foreign file). */
  checkEntry(offset: number, width: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < HEADER_BYTES || offset + entryBytes(width) > this.size)
      throw new QuantlensError('STATE', `${what}: bytes ${offset} … ${offset + entryBytes(width)} of width ${width} lie outside the file's ${this.size} bytes; the state is truncated or corrupt`, this.file);
  }

  private readInto(into: Float64Array, position: number): void {
    const b = bytesOf(into);
    for (let off = 0; off < b.byteLength; ) {
      const n = readSync(this.fd, b, off, Math.min(SLICE_BYTES, b.byteLength - off), position + off);
      if (n <= 0) throw new QuantlensError('STATE', `correlation state file ended early at byte ${position + off}`, this.file);
      off += n;
    }
  }

  /** mean, min and max of the entry at `offset` (3 × d float64). */
  vectors(offset: number, width: number): { mean: Float64Array; min: Float64Array; max: Float64Array } {
    const v = new Float64Array(3 * width);
    this.readInto(v, offset);
    return { mean: v.subarray(0, width), min: v.subarray(width, 2 * width), max: v.subarray(2 * width) };
  }

  /** The entry's packed upper triangle, handed to `each` in consecutive slices (one reused buffer). */
  upperSlices(offset: number, width: number, each: (slice: Float64Array) => void): void {
    const total = (width * (width + 1)) / 2;
    const buf = new Float64Array(Math.min(total, SLICE_BYTES / 8));
    let pos = offset + 3 * width * 8;
    for (let done = 0; done < total; ) {
      const n = Math.min(buf.length, total - done);
      const slice = buf.subarray(0, n);
      this.readInto(slice, pos);
      each(slice);
      done += n;
      pos += n * 8;
    }
  }

  close(): void {
    closeSync(this.fd);
  }
}
