/**
 * An append-only file of float64 values: exact percentiles need every per-position value, but
 * the run must not hold them in memory while it streams. Values are appended per batch (8 bytes
 * each, never × vocab) and read back once at the end, one spill at a time, to be sorted.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class ValueSpill {
  private fd: number | null;
  private count = 0;
  readonly file: string;

  constructor(
    dir: string,
    name: string,
  ) {
    this.file = path.join(dir, `${name}.f64`);
    this.fd = openSync(this.file, 'w+');
  }

  get length(): number {
    return this.count;
  }

  append(values: Float64Array): void {
    if (this.fd === null) throw new Error(`value spill ${this.file} is closed`);
    writeSync(this.fd, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    this.count += values.length;
  }

  /** All values appended so far, in order (O(count) memory, for the end of a run). */
  readAll(): Float64Array {
    if (this.fd === null) throw new Error(`value spill ${this.file} is closed`);
    const out = new Float64Array(this.count);
    const bytes = new Uint8Array(out.buffer);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(this.fd, bytes, done, bytes.length - done, done);
      if (n === 0) throw new Error(`value spill ${this.file} is shorter than expected`);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** A private temporary folder for spills; `remove()` deletes it and everything in it. */
export function spillFolder(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
