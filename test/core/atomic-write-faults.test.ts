/**
 * core/atomic-write.ts under faults: write errors become one line naming the file, and stale
 * temporaries are removed only when the process that made them is gone.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { removeStaleTemporaries, writeAtomically, writeError } from '../../core/atomic-write.ts';
import { isQuantlensError } from '../../core/errors.ts';
import { tempDir } from '../helpers/temp.ts';

test('an ENOSPC while writing names the final file; other errors keep their identity', () => {
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const e = writeError('/x/out/neurons.parquet', enospc);
  assert.ok(isQuantlensError(e));
  assert.is((e as Error).message, '/x/out/neurons.parquet: cannot write neurons.parquet: no space left on device (ENOSPC)');
  const bug = new TypeError('x is undefined');
  assert.is(writeError('/x/a', bug), bug);
});

test('a write that fails with EROFS-like errors removes its temporary and names the file', async () => {
  const dir = tempDir('ql-awf-');
  let err: unknown;
  try {
    await writeAtomically(path.join(dir, 'summary.json'), async (tmp) => {
      writeFileSync(tmp, 'partial');
      throw Object.assign(new Error('EDQUOT'), { code: 'EDQUOT' });
    });
  } catch (e) {
    err = e;
  }
  assert.match((err as Error).message, /summary\.json: cannot write summary\.json: disk quota exceeded \(EDQUOT\)/);
  assert.equal(readdirSync(dir), []);
});

test('stale temporaries: a dead process\'s are removed (also one level down), a live one\'s are kept', () => {
  const dir = tempDir('ql-awf-');
  // A pid that certainly ran and exited.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  mkdirSync(path.join(dir, 'state'));
  const names = [`.model_nf4.onnx.tmp-${dead}-abc123`, `state/.checkpoint.json.tmp-${dead}-zz9`, `.live.parquet.tmp-${process.ppid}-q1w2e3`, 'model_nf4.onnx', '.hidden'];
  for (const n of names) writeFileSync(path.join(dir, n), 'x');
  const removed = removeStaleTemporaries(dir, 1).map((p) => path.relative(dir, p)).sort();
  assert.equal(removed, [`.model_nf4.onnx.tmp-${dead}-abc123`, `state/.checkpoint.json.tmp-${dead}-zz9`].sort());
  for (const keep of names.slice(2)) assert.ok(existsSync(path.join(dir, keep)), `${keep} kept`);
});

test.run();
