/**
 * An output folder is one unit. While a run (or merge) writes it, the folder holds the marker
 * file INCOMPLETE; the results of an older run in the same folder are removed before any new
 * one is written, so old and new files never mix; the marker goes only after the last result is
 * in place. A killed run leaves the marker, which `report` and `merge` refuse, and the next run
 * removes the killed run's temporaries. Only quantlens's own result names are ever removed: the
 * folder may hold other files (shard folders, a user's notes).
 */
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { removeStaleTemporaries, syncPath } from '../core/atomic-write.ts';

export const INCOMPLETE_MARKER = 'INCOMPLETE';

/** Everything a run or merge writes at the top of its folder (state/ is the checkpoint's). */
const RESULT_NAMES = new Set([
  'predictions.parquet',
  'neurons.parquet',
  'calibration.parquet',
  'dead.parquet',
  'correlation.parquet',
  'agreement.parquet',
  'salience.parquet',
  'summary.json',
  'report.html',
  'figures',
  'activations',
]);

/** Result files of any run now in `dir`. */
export function resultsIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => RESULT_NAMES.has(n));
}

function removeResults(dir: string): void {
  for (const n of resultsIn(dir)) rmSync(path.join(dir, n), { recursive: true, force: true });
}

/** Before the first result is written: mark the folder, drop old results and dead processes' temporaries. */
export async function beginOutput(dir: string): Promise<void> {
  const marker = path.join(dir, INCOMPLETE_MARKER);
  writeFileSync(marker, 'quantlens is writing this folder, or a run writing it was killed; its files are not a result.\n');
  await syncPath(marker);
  await syncPath(dir);
  removeResults(dir);
  removeStaleTemporaries(dir, 2);
}

/** After the last result is in place. */
export async function endOutput(dir: string): Promise<void> {
  rmSync(path.join(dir, INCOMPLETE_MARKER), { force: true });
  await syncPath(dir);
}

/**
 * After a failure: this run's results go (a failed run leaves nothing under a final name);
 * the marker stays only while a checkpoint remains to resume from.
 */
export function abortOutput(dir: string, checkpointKept: boolean): void {
  removeResults(dir);
  if (!checkpointKept) rmSync(path.join(dir, INCOMPLETE_MARKER), { force: true });
}

/** Readers of a finished folder (report, merge) refuse one that is still, or was left, incomplete. */
export function checkOutputComplete(dir: string): void {
  if (existsSync(path.join(dir, INCOMPLETE_MARKER)))
    throw new QuantlensError('STATE', `folder is incomplete (${INCOMPLETE_MARKER} present: a run writing it is running, failed or was killed); run it again or with --resume`, dir);
}
