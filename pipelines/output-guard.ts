/**
 * The CLI never overwrites finished results without --force. A run or merge folder is finished
 * when its summary.json exists (a shard folder: its state.json, written last); a quantized or
 * converted model when its file exists. `--resume` continues an unfinished run and is a no-op
 * on a finished one.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';
import { CHECKPOINT_FILE, SHARD_STATE_FILE, STATE_DIR } from './checkpoint.ts';

export type OutputVerdict = 'write' | 'already-complete';

/** Whether a run may write `outDir` (a run or shard folder). Throws when it holds finished results. */
export function checkRunOutput(outDir: string, opts: { force?: boolean; resume?: boolean; shard?: boolean }): OutputVerdict {
  const marker = path.join(outDir, opts.shard ? SHARD_STATE_FILE : 'summary.json');
  if (opts.force || !existsSync(marker)) return 'write';
  if (opts.resume) return existsSync(path.join(outDir, STATE_DIR, CHECKPOINT_FILE)) ? 'write' : 'already-complete';
  throw new QuantlensError('IO', `holds a finished run (${path.basename(marker)}); use --force to overwrite it, or --output for another folder`, outDir);
}

/** Refuse to replace existing files without --force (quantize --output, convert --output). */
export function checkFilesAbsent(files: string[], opts: { force?: boolean }): void {
  if (opts.force) return;
  const there = files.find((f) => existsSync(f));
  if (there) throw new QuantlensError('IO', 'already exists; use --force to overwrite it, or --output for another folder', there);
}

/** A folder that exists and is not empty counts as finished output for `convert`. */
export function checkFolderEmpty(dir: string, opts: { force?: boolean }): void {
  if (!opts.force && existsSync(dir) && readdirSync(dir).length > 0)
    throw new QuantlensError('IO', 'is not empty; use --force to write into it, or --output for another folder', dir);
}
