/**
 * A full disk: the run's output folder on a small tmpfs (mounted here when running as root;
 * otherwise one SKIP line). Whatever file the disk fills up on — a checkpoint, a prediction part,
 * a table, the summary, the report — the run fails with one line naming that file and ENOSPC,
 * and leaves no result under a final name and no temporary; only a checkpoint written before
 * the disk filled may remain (with the folder marked INCOMPLETE), and --resume on a disk with
 * room finishes from it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expectError, quiet } from './harness.ts';
import { parsePipeline } from '../../pipelines/load.ts';
import { runPipeline } from '../../pipelines/run.ts';
import { INCOMPLETE_MARKER, resultsIn } from '../../pipelines/output-folder.ts';
import { tempDir } from '../helpers/temp.ts';

const yaml = (out: string, every = 1) =>
  ['model: demo', 'dataset:', '  path: demo', 'batch: {max_examples: 8, window: 16}', 'measure: [predictions, neurons, calibration, dead]', 'calibration: {bootstrap: 20}', `checkpoint_every: ${every}`, `output: ${out}`].join('\n');

/** Checkpoints after every batch (the disk fills on state files), or none (it fills while finishing). */
const SWEEPS = [
  { every: 1, sizesKb: [4, 8, 16, 32, 64, 128, 2048] },
  { every: 1000, sizesKb: [4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128, 2048] },
];

function mountTmpfs(dir: string, bytes: number): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

test('disk full at every size from a few KB to enough: one line naming the file, nothing under a final name', async () => {
  const mnt = tempDir('ql-full-');
  if (!mountTmpfs(mnt, 1 << 20)) {
    console.log('SKIP disk full: cannot mount a tmpfs (needs root)');
    return;
  }
  execFileSync('umount', [mnt]);
  const failedOn = new Set<string>();
  let succeeded = false;
  try {
    for (const { every, sizesKb } of SWEEPS)
    for (const kb of sizesKb) {
      mountTmpfs(mnt, kb * 1024);
      try {
        const out = path.join(mnt, 'out');
        const cfg = parsePipeline(yaml(out, every), path.join(mnt, 'p.yaml'));
        let err: Error | null = null;
        try {
          await runPipeline(cfg, { ...quiet, report: true });
          succeeded = true;
        } catch (e) {
          err = await expectError(() => Promise.reject(e), new RegExp(`${mnt}/out/.*: cannot write [\\w.-]+: no space left on device \\(ENOSPC\\)`));
        }
        if (err) {
          failedOn.add(/cannot write ([\w.-]+)/.exec(err.message)![1].replace(/-\d+\.parquet$/, '-<k>.parquet'));
          assert.equal(resultsIn(out), [], `${kb} KB: no result under a final name`);
          const files = readdirSync(mnt, { recursive: true }).map(String);
          assert.equal(files.filter((f) => f.includes('.tmp-')), [], `${kb} KB: no temporaries`);
          const ck = existsSync(path.join(out, 'state', 'checkpoint.json'));
          assert.is(existsSync(path.join(out, INCOMPLETE_MARKER)), ck, `${kb} KB: marked incomplete exactly when a checkpoint remains`);
        }
      } finally {
        execFileSync('umount', [mnt]);
      }
    }
  } finally {
    rmSync(mnt, { recursive: true, force: true });
  }
  console.log(`    ENOSPC named: ${[...failedOn].join(', ')}`);
  assert.ok(failedOn.size >= 2, `the disk filled on several different files (${[...failedOn].join(', ')})`);
  assert.ok(succeeded, 'with enough room the run succeeds');
});

test('after a full disk, --resume with room finishes from the checkpoint', async () => {
  const mnt = tempDir('ql-full-');
  if (!mountTmpfs(mnt, 64 * 1024)) {
    console.log('SKIP disk full resume: cannot mount a tmpfs (needs root)');
    return;
  }
  const out = path.join(mnt, 'out');
  const saved = tempDir('ql-full-saved-');
  try {
    await runPipeline(parsePipeline(yaml(out), path.join(mnt, 'p.yaml')), quiet).catch(() => undefined);
    if (!existsSync(path.join(out, 'state', 'checkpoint.json'))) {
      console.log('SKIP disk full resume: the disk filled before the first checkpoint');
      return;
    }
    // Move the folder to a disk with room, as a user would, and resume there.
    execFileSync('cp', ['-a', out, saved]);
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
  const moved = path.join(saved, 'out');
  const logs: string[] = [];
  await runPipeline(parsePipeline(yaml(moved), path.join(saved, 'p.yaml')), { ...quiet, resume: true, log: (l) => logs.push(l) });
  assert.ok(logs.some((l) => l.includes('resuming after batch')), logs.join('\n'));
  assert.ok(existsSync(path.join(moved, 'summary.json')));
  assert.not.ok(existsSync(path.join(moved, INCOMPLETE_MARKER)));
  rmSync(saved, { recursive: true, force: true });
});

test.run();
