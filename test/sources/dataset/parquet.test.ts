import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { readCsvRecords } from '../../../sources/dataset/csv.ts';
import { fileHandleAsyncBuffer, readParquetColumns, readParquetRecords } from '../../../sources/dataset/parquet.ts';
import { QuantlensError } from '../../../core/errors.ts';
import { tempDir } from '../../helpers/temp.ts';

const dir = tempDir('ql-parquet-');
let fileNo = 0;
const tempPath = (ext: string) => path.join(dir, `f${fileNo++}.${ext}`);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const PIECES = ['a', 'Z', ' ', 'é', '€', '中', '😀', ',', '"', '\n', '\r\n'];

function table(rowCount: number, seed: number): { prompt: string[]; gold: string[] } {
  const prompt: string[] = [];
  const gold: string[] = [];
  for (let i = 0; i < rowCount; i++) {
    let v = `q${i}`;
    for (let k = 0; k < (i * 7 + seed) % 6; k++) v += PIECES[(i * 13 + k * 5 + seed) % PIECES.length];
    prompt.push(v);
    gold.push(i % 3 === 0 ? 'True' : 'False');
  }
  return { prompt, gold };
}

function writeCsv(t: { prompt: string[]; gold: string[] }): string {
  const p = tempPath('csv');
  const q = (v: string) => `"${v.replace(/"/g, '""')}"`;
  writeFileSync(p, ['prompt,gold', ...t.prompt.map((v, i) => `${q(v)},${t.gold[i]}`)].join('\n') + '\n');
  return p;
}

function writeParquet(t: { prompt: string[]; gold: string[] }, rowGroupSize: number): string {
  const p = tempPath('parquet');
  parquetWriteFile({
    filename: p,
    columnData: [
      { name: 'prompt', data: t.prompt, type: 'STRING' },
      { name: 'gold', data: t.gold, type: 'STRING' },
    ],
    rowGroupSize,
  });
  return p;
}

test('Parquet and CSV holding the same table give the same records (several row-group sizes)', async () => {
  for (const [rows, groupSize] of [[0, 5], [1, 5], [23, 5], [100, 7], [250, 1000]]) {
    const t = table(rows, rows + groupSize);
    const fromCsv = await collect(readCsvRecords(writeCsv(t)));
    assert.is(fromCsv.length, rows);
    const pq = writeParquet(t, groupSize);
    assert.equal(await collect(readParquetRecords(pq)), fromCsv, `${rows} rows, groups of ${groupSize}`);
    assert.equal(await readParquetColumns(pq), ['prompt', 'gold']);
  }
});

test('a row range reads only the overlapping rows, with file row indices as ids', async () => {
  const t = table(53, 3);
  const pq = writeParquet(t, 10);
  const all = await collect(readParquetRecords(pq));
  for (const [start, end] of [[0, 0], [0, 1], [9, 11], [10, 20], [17, 53], [50, 1000], [60, 70], [0, Infinity]]) {
    const got = await collect(readParquetRecords(pq, { start, end }));
    assert.equal(got, all.slice(start, end), `range ${start}-${end}`);
    assert.equal(got.map((r) => r.example_id), all.slice(start, end).map((_, k) => start + k));
  }
});

test('typed and null values become text', async () => {
  const p = tempPath('parquet');
  parquetWriteFile({
    filename: p,
    columnData: [
      { name: 'n', data: new Int32Array([1, -2, 3]), type: 'INT32' },
      { name: 'x', data: [0.5, 2, -1.25], type: 'DOUBLE' },
      { name: 'b', data: [true, false, true], type: 'BOOLEAN' },
      { name: 's', data: ['a', null, 'c'], type: 'STRING', nullable: true },
    ],
  });
  const records = await collect(readParquetRecords(p));
  assert.equal(records.map((r) => r.fields), [
    { n: String(1), x: String(0.5), b: String(true), s: 'a' },
    { n: String(-2), x: String(2), b: String(false), s: '' },
    { n: String(3), x: String(-1.25), b: String(true), s: 'c' },
  ]);
});

test('the file-backed AsyncBuffer returns exactly the requested byte ranges', async () => {
  const p = tempPath('bin');
  const bytes = new Uint8Array(10_000).map((_, i) => (i * 31 + 7) & 255);
  writeFileSync(p, bytes);
  const handle = await fs.open(p, 'r');
  try {
    const buffer = fileHandleAsyncBuffer(handle, bytes.length);
    const whole = readFileSync(p);
    for (const [start, end] of [[0, 1], [5, 5], [100, 4321], [9990, 10_000], [9000, undefined]] as const) {
      const got = new Uint8Array(await buffer.slice(start, end));
      assert.equal(Array.from(got), Array.from(whole.subarray(start, end ?? whole.length)));
    }
  } finally {
    await handle.close();
  }
});

test('not a Parquet file / missing file are DATASET errors', async () => {
  const bad = tempPath('parquet');
  writeFileSync(bad, 'prompt,gold\nx,y\n');
  for (const [p, start] of [[bad, `${bad}: not a readable Parquet file (`], [path.join(dir, 'none.parquet'), `dataset file not found: ${path.join(dir, 'none.parquet')}`]]) {
    try {
      await collect(readParquetRecords(p));
      assert.unreachable('should throw');
    } catch (e) {
      assert.instance(e, QuantlensError);
      assert.is((e as QuantlensError).code, 'DATASET');
      assert.ok((e as Error).message.startsWith(start), (e as Error).message);
    }
  }
});

test.run();
