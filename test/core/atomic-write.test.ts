import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeAtomically, writeFileAtomically } from '../../core/atomic-write.ts';
import { tempDir } from '../helpers/temp.ts';

test('a completed write appears under its final name only', async () => {
  const dir = tempDir('ql-aw-');
  await writeFileAtomically(path.join(dir, 'a.txt'), 'hello');
  assert.equal(readdirSync(dir), ['a.txt']);
  assert.is(readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'hello');
});

test('a failed write leaves nothing behind', async () => {
  const dir = tempDir('ql-aw-');
  let threw = false;
  try {
    await writeAtomically(path.join(dir, 'b.parquet'), async (tmp) => {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(tmp, 'partial');
      throw new Error('boom');
    });
  } catch {
    threw = true;
  }
  assert.ok(threw);
  assert.equal(readdirSync(dir), []);
});

test.run();
