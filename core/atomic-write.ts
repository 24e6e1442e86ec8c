import { promises as fsp, existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from './errors.ts';
import { faultPoint } from './fault-point.ts';

/**
 * Results are written under a temporary name in the same folder and renamed when complete,
 * so a crash, Ctrl-C or error never leaves a half-written file under a final name. Before the
 * rename the temporary file and, after it, the folder are fsynced: a power cut leaves the old
 * state or the new one, never a torn file. Every temporary path is registered so that an
 * interrupt handler can remove it; a killed process's temporaries are removed by the next run
 * (removeStaleTemporaries).
 */
const pending = new Set<string>();

export function tempPathFor(finalPath: string): string {
  const dir = path.dirname(finalPath);
  const base = path.basename(finalPath);
  return path.join(dir, `.${base}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
}

/** What the user can do something about, by errno; anything else is a bug and keeps its stack. */
const WRITE_ERRORS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EIO: 'input/output error',
  EFBIG: 'file too large',
  EMFILE: 'too many open files',
  ENOTDIR: 'a parent is not a folder',
};

/** An fs error while writing `finalPath` as one line naming that file (Node's names no path for write()). */
export function writeError(finalPath: string, e: unknown): unknown {
  if (e instanceof QuantlensError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (!code || !(code in WRITE_ERRORS)) return e;
  return new QuantlensError('IO', `cannot write ${path.basename(finalPath)}: ${WRITE_ERRORS[code]} (${code})`, finalPath, { cause: e });
}

/** fsync a file or folder by path (a folder's fsync makes a rename inside it durable). */
export async function syncPath(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Run `write(tmp)` then fsync, rename tmp → finalPath, fsync the folder. On failure the temporary is removed. */
export async function writeAtomically<T>(finalPath: string, write: (tmpPath: string) => Promise<T>): Promise<T> {
  try {
    await fsp.mkdir(path.dirname(finalPath), { recursive: true });
  } catch (e) {
    throw writeError(finalPath, e);
  }
  const tmp = tempPathFor(finalPath);
  pending.add(tmp);
  try {
    const result = await write(tmp);
    faultPoint('written', finalPath);
    if (existsSync(tmp)) await syncPath(tmp);
    await fsp.rename(tmp, finalPath);
    await syncPath(path.dirname(finalPath));
    faultPoint('renamed', finalPath);
    return result;
  } catch (e) {
    await fsp.rm(tmp, { force: true, recursive: true });
    throw writeError(finalPath, e);
  } finally {
    pending.delete(tmp);
  }
}

export async function writeFileAtomically(finalPath: string, data: string | Uint8Array): Promise<void> {
  await writeAtomically(finalPath, (tmp) => fsp.writeFile(tmp, data));
}

/** Remove every temporary file still being written (used on SIGINT/SIGTERM). */
export function removePendingTemporaries(): void {
  for (const tmp of pending) {
    if (existsSync(tmp)) rmSync(tmp, { force: true, recursive: true });
  }
  pending.clear();
}

/** Temporaries made by tempPathFor: ".<name>.tmp-<pid>-<random>". */
const TEMPORARY = /^\..+\.tmp-(\d+)-[a-z0-9]+$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove temporaries in `dir` (and, with `depth`, in its subfolders) left by processes that no
 * longer run: a SIGKILL gives no chance to clean up, so the next run does. A temporary of a live
 * process (a parallel shard writing into a shared cache) is left alone. Returns what was removed.
 */
export function removeStaleTemporaries(dir: string, depth = 0): string[] {
  const removed: string[] = [];
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return removed;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    const m = TEMPORARY.exec(e.name);
    if (m) {
      const pid = Number(m[1]);
      if (pending.has(p) || (pid !== process.pid && processAlive(pid))) continue;
      rmSync(p, { force: true, recursive: true });
      removed.push(p);
    } else if (depth > 0 && e.isDirectory()) removed.push(...removeStaleTemporaries(p, depth - 1));
  }
  return removed;
}
