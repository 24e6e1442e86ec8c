/**
 * Where correlation state files are: always beside the JSON that lists them, by plain file name
 * (a state copied or moved as a folder keeps working; a name cannot point outside its folder).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../../core/errors.ts';
import { syncPath, writeAtomically } from '../../core/atomic-write.ts';

/** `dir/name`, refusing a name that is not a plain file name. */
export function stateFilePath(dir: string, name: string): string {
  if (!name || name !== path.basename(name) || name === '.' || name === '..' || name.includes('\\'))
    throw new QuantlensError('STATE', `correlation state file name ${JSON.stringify(name)} is not a plain file name`, dir);
  return path.join(dir, name);
}

/**
 * `target` gets the bytes of `source` (a retired pass's file moving from state/ into a shard
 * folder): a hard link where the file system allows it (no copy of gigabytes; state/ may still
 * be resumed from until the shard is complete), else an atomic copy. Returns `target`.
 */
export async function linkOrCopy(source: string, target: string): Promise<string> {
  await fsp.rm(target, { force: true });
  try {
    await fsp.link(source, target);
    await syncPath(path.dirname(target));
  } catch {
    await writeAtomically(target, (tmp) => fsp.copyFile(source, tmp));
  }
  return target;
}
