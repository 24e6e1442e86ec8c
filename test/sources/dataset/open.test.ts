import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import type { DatasetRecord } from '../../../core/types.ts';
import { datasetColumns, datasetFormat, openDataset, type DatasetSpec } from '../../../sources/dataset/open.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { sharedPath } from '../../helpers/shared.ts';
import { tempDir } from '../../helpers/temp.ts';
import { expectThrows } from '../../helpers/expect-error.ts';

const dir = tempDir('ql-open-');

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const expectSyncError = (fn: () => unknown, code: string, message: string) => expectThrows(fn, { code, message });

/** The same 37-row table as CSV, JSONL and Parquet (row groups of 5). */
const N = 37;
const prompts = Array.from({ length: N }, (_, i) => `row ${i}, "q" é\n${'x'.repeat(i % 4)}`);
const golds = Array.from({ length: N }, (_, i) => (i % 2 ? 'A' : 'B'));
const csvPath = path.join(dir, 'data.csv');
writeFileSync(csvPath, 'prompt,gold\r\n' + prompts.map((p, i) => `"${p.replace(/"/g, '""')}",${golds[i]}\r\n`).join(''));
const jsonlPath = path.join(dir, 'data.ndjson');
writeFileSync(jsonlPath, prompts.map((p, i) => JSON.stringify({ prompt: p, gold: golds[i] })).join('\n\n') + '\n');
const parquetPath = path.join(dir, 'data.parquet');
parquetWriteFile({ filename: parquetPath, columnData: [{ name: 'prompt', data: prompts, type: 'STRING' }, { name: 'gold', data: golds, type: 'STRING' }], rowGroupSize: 5 });
const expectedAll: DatasetRecord[] = prompts.map((p, i) => ({ example_id: i, fields: { prompt: p, gold: golds[i] } }));

test('datasetFormat: explicit format wins, else the extension decides', () => {
  assert.is(datasetFormat({ path: 'a.CSV' }), 'csv');
  assert.is(datasetFormat({ path: 'a.jsonl' }), 'jsonl');
  assert.is(datasetFormat({ path: 'dir.x/a.ndjson' }), 'jsonl');
  assert.is(datasetFormat({ path: 'a.parquet' }), 'parquet');
  assert.is(datasetFormat({ path: 'a.txt', format: 'jsonl' }), 'jsonl');
  expectSyncError(() => datasetFormat({ path: 'a.tsv' }), 'DATASET', 'cannot tell the format of a.tsv from its extension (.csv, .jsonl, .ndjson, .parquet); set dataset.format');
  expectSyncError(() => datasetFormat({ path: 'a.csv', format: 'xml' as never }), 'CONFIG', 'dataset.format must be one of csv, jsonl, parquet, got "xml"');
});

test('all three formats give the same records and columns', async () => {
  for (const p of [csvPath, jsonlPath, parquetPath]) {
    assert.equal(await collect(openDataset({ path: p }, { chunkSize: 7 })), expectedAll, p);
    assert.equal(await datasetColumns({ path: p }), ['prompt', 'gold']);
  }
});

/** Brute force: the selection is a slice of all rows, a shard every count-th element of it. */
function bruteForce(all: DatasetRecord[], spec: DatasetSpec): DatasetRecord[] {
  const skip = spec.skip ?? 0;
  const selected = all.slice(skip, spec.limit === undefined ? undefined : skip + spec.limit);
  const shard = spec.shard ?? { index: 0, count: 1 };
  return selected.filter((_, j) => j % shard.count === shard.index);
}

test('skip/limit/shard match brute force in every format; shards partition the selection', async () => {
  for (const p of [csvPath, jsonlPath, parquetPath]) {
    for (const skip of [undefined, 0, 3, 36, 37, 50]) {
      for (const limit of [undefined, 0, 1, 6, 20, 100]) {
        const selection = await collect(openDataset({ path: p, skip, limit }));
        assert.equal(selection, bruteForce(expectedAll, { path: p, skip, limit }), `${p} skip ${skip} limit ${limit}`);
        for (const count of [1, 2, 3, 8]) {
          const shards: DatasetRecord[][] = [];
          for (let index = 0; index < count; index++) {
            const spec = { path: p, skip, limit, shard: { index, count } };
            const got = await collect(openDataset(spec));
            assert.equal(got, bruteForce(expectedAll, spec));
            shards.push(got);
          }
          const ids = shards.flat().map((r) => r.example_id);
          assert.is(new Set(ids).size, ids.length, 'shards are disjoint');
          assert.equal([...ids].sort((a, b) => a - b), selection.map((r) => r.example_id), 'union = selection');
          const sizes = shards.map((s) => s.length);
          assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `balanced: ${sizes}`);
        }
      }
    }
  }
});

test('shared boolq.csv: 4 shards of skip 100 / limit 5000 partition the selection', async () => {
  const p = sharedPath('datasets/boolq.csv', 'boolq sharding');
  if (!p) return;
  const all = await collect(openDataset({ path: p }));
  assert.is(all.length, 10000);
  const spec = { path: p, skip: 100, limit: 5000 };
  const selection = await collect(openDataset(spec));
  assert.equal(selection, all.slice(100, 5100));
  const shards = await Promise.all([0, 1, 2, 3].map((index) => collect(openDataset({ ...spec, shard: { index, count: 4 } }))));
  assert.equal(shards.map((s) => s.length), [1250, 1250, 1250, 1250]);
  const union = shards.flat().sort((a, b) => a.example_id - b.example_id);
  assert.equal(union, selection);
  shards.forEach((s, index) => s.forEach((r) => assert.is((r.example_id - 100) % 4, index)));
});

test('selection and format are validated before any read', () => {
  const p = path.join(dir, 'missing.csv');
  expectSyncError(() => openDataset({ path: p, skip: -1 }), 'CONFIG', 'dataset.skip must be a non-negative integer, got -1');
  expectSyncError(() => openDataset({ path: p, limit: 1.5 }), 'CONFIG', 'dataset.limit must be a non-negative integer, got 1.5');
  expectSyncError(() => openDataset({ path: p, shard: { index: 2, count: 2 } }), 'CONFIG', 'shard index must be an integer in 0..1, got 2');
  expectSyncError(() => openDataset({ path: p, shard: { index: -1, count: 2 } }), 'CONFIG', 'shard index must be an integer in 0..1, got -1');
  expectSyncError(() => openDataset({ path: p, shard: { index: 0, count: 0 } }), 'CONFIG', 'shard count must be a positive integer, got 0');
});

test('a missing file fails on the first next(), not at open', async () => {
  const p = path.join(dir, 'missing.jsonl');
  const it = openDataset({ path: p }); // must not throw
  try {
    await collect(it);
    assert.unreachable('should throw');
  } catch (e) {
    assert.instance(e, QuantlensError);
    assert.is((e as QuantlensError).code, 'DATASET');
    assert.is((e as Error).message, `dataset file not found: ${p}`);
  }
  try {
    await datasetColumns({ path: path.join(dir, 'missing.parquet') });
    assert.unreachable('should throw');
  } catch (e) {
    assert.is((e as Error).message, `dataset file not found: ${path.join(dir, 'missing.parquet')}`);
  }
});

test('stopping early or reaching the limit closes the file; iterating twice reads twice', async () => {
  const openFds = () => readdirSync('/proc/self/fd').length;
  const before = openFds();
  for (const p of [csvPath, jsonlPath, parquetPath]) {
    for await (const r of openDataset({ path: p })) if (r.example_id === 2) break;
    await collect(openDataset({ path: p, limit: 3 }));
    const it = openDataset({ path: p, skip: 30 });
    assert.equal(await collect(it), await collect(it));
  }
  assert.is(openFds(), before);
});

test.run();
