import { promises as fsp, existsSync, rmSync } from 'node:fs';
import path from 'node:path';

/**
 * Results are written under a temporary name in the same folder and renamed when complete,
 * so a crash, Ctrl-C or error never leaves a half-written file under a final name.
 * Every temporary path is registered so that an interrupt handler can remove it.
 */
const pending = new Set<string>();

export function tempPathFor(finalPath: string): string {
  const dir = path.dirname(finalPath);
  const base = path.basename(finalPath);
  return path.join(dir, `.${base}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
}

/** Run `write(tmp)` then rename tmp → finalPath. On failure the temporary file is removed. */
export async function writeAtomically<T>(finalPath: string, write: (tmpPath: string) => Promise<T>): Promise<T> {
  await fsp.mkdir(path.dirname(finalPath), { recursive: true });
  const tmp = tempPathFor(finalPath);
  pending.add(tmp);
  try {
    const result = await write(tmp);
    await fsp.rename(tmp, finalPath);
    return result;
  } catch (e) {
    await fsp.rm(tmp, { force: true, recursive: true });
    throw e;
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
