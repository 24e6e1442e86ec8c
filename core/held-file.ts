/**
 * One lifecycle for every streaming sink (Parquet tables, Arrow IPC dumps): a file written under a
 * temporary name through an open handle across many async writes, then either committed (closed
 * and renamed to its final name) or discarded. The temporary is registered with atomic-write's
 * pending set for its whole life (by running writeAtomically around it), so Ctrl-C removes it.
 *
 *   const f = await HeldFile.open(finalPath);
 *   f.ensureOpen('append'); await f.file.write(bytes);   // many times
 *   await f.close(async () => { ...write the footer... }); // or f.abort()
 */
import { open, type FileHandle } from 'node:fs/promises';
import { writeAtomically } from './atomic-write.ts';
import { QuantlensError } from './errors.ts';

interface HeldTemporary {
  readonly tmpPath: string;
  /** Rename to the final name. */
  commit(): Promise<void>;
  /** Remove the temporary file. */
  discard(): Promise<void>;
}

const DISCARDED = Symbol('discarded');

/** A temporary beside `finalPath`, pending until commit() or discard(). */
async function holdTemporaryFile(finalPath: string): Promise<HeldTemporary> {
  let settle!: (ok: boolean) => void;
  let tmpPath = '';
  let opened!: () => void;
  const ready = new Promise<void>((resolve) => (opened = resolve));
  const done = writeAtomically(finalPath, (tmp) => {
    tmpPath = tmp;
    return new Promise<void>((resolve, reject) => {
      settle = (ok) => (ok ? resolve() : reject(DISCARDED));
      opened();
    });
  });
  // Surfaces mkdir failures before the callback runs; the settled branch is observed below.
  done.catch(() => {});
  try {
    await Promise.race([ready, done]);
  } catch (e) {
    throw new QuantlensError('IO', `cannot create the output folder: ${(e as Error).message}`, finalPath, { cause: e });
  }
  return {
    tmpPath,
    async commit() {
      settle(true);
      try {
        await done;
      } catch (e) {
        throw new QuantlensError('IO', `cannot rename temporary file into place: ${(e as Error).message}`, finalPath, { cause: e });
      }
    },
    async discard() {
      settle(false);
      await done.catch((e) => {
        if (e !== DISCARDED) throw e;
      });
    },
  };
}

export type HeldFileState = 'open' | 'closed' | 'aborted' | 'failed';

/** An open handle on a held temporary, with the open → closed | aborted | failed state machine. */
export class HeldFile {
  state: HeldFileState = 'open';

  private constructor(readonly finalPath: string, readonly file: FileHandle, private held: HeldTemporary) {}

  static async open(finalPath: string): Promise<HeldFile> {
    const held = await holdTemporaryFile(finalPath);
    try {
      return new HeldFile(finalPath, await open(held.tmpPath, 'w'), held);
    } catch (e) {
      await held.discard();
      throw new QuantlensError('IO', `cannot create temporary file: ${(e as Error).message}`, finalPath, { cause: e });
    }
  }

  /** A one-line error naming the file. */
  fail(msg: string): never {
    throw new QuantlensError('IO', msg, this.finalPath);
  }

  /** `e` as a QuantlensError naming the file. */
  wrap(e: unknown): QuantlensError {
    return e instanceof QuantlensError ? e : new QuantlensError('IO', `write failed: ${(e as Error).message}`, this.finalPath, { cause: e });
  }

  /** Refuse `verb()` on a sink that is no longer open. */
  ensureOpen(verb: string): void {
    if (this.state !== 'open') this.fail(`${verb}() after ${this.state === 'failed' ? 'a failed write' : this.state === 'closed' ? 'close()' : 'abort()'}`);
  }

  /** Run `writeTail` (last bytes, footer), close the handle and rename into place; on error, discard. */
  async close(writeTail: () => Promise<void>): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state !== 'open') this.fail(`close() after ${this.state === 'failed' ? 'a failed write (call abort())' : 'abort()'}`);
    try {
      await writeTail();
      await this.file.close();
    } catch (e) {
      this.state = 'failed';
      await this.abort();
      throw this.wrap(e);
    }
    this.state = 'closed';
    await this.held.commit();
  }

  /** Remove the temporary file; the final name never appears. */
  async abort(): Promise<void> {
    if (this.state === 'closed' || this.state === 'aborted') return;
    this.state = 'aborted';
    await this.file.close().catch(() => {});
    await this.held.discard();
  }
}
